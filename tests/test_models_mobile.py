"""MobileNet v1/v2 and ShuffleNet v1/v2: shapes, parameter and MAC counts against docs/recipes.md
and the papers' tables, weight-for-weight equivalence with torchvision's twins, and the details the
papers draw (the v1 table's stride typo, linear bottlenecks, the ungrouped first 1×1, shuffles)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from classicnets.models import get_model, list_models, model_info
from classicnets.models.mobilenet import InvertedResidual
from classicnets.models.shufflenet import ShuffleUnit, channel_shuffle
from model_utils import copy_weights_by_order, count_params, randomize_batchnorm_

SHUFFLE_V1 = [f"shufflenet_v1_g{g}" for g in (1, 2, 3, 4, 8)]
SHUFFLE_V2 = [f"shufflenet_v2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")]
MOBILE = ["mobilenet_v1", "mobilenet_v2", *SHUFFLE_V1, *SHUFFLE_V2]
TWINS = ["mobilenet_v2", *SHUFFLE_V2]

# Exact counts of our layouts. docs/recipes.md / torchvision give mobilenet_v2 and ShuffleNet v2;
# the others are counted from the papers' tables and checked against their rounded figures below.
PARAMS = {
    "mobilenet_v1": 4_231_976, "mobilenet_v2": 3_504_872,
    "shufflenet_v1_g1": 1_530_936, "shufflenet_v1_g2": 1_732_848,
    "shufflenet_v1_g3": 1_864_728, "shufflenet_v1_g4": 1_967_344,
    "shufflenet_v1_g8": 2_433_768,
    "shufflenet_v2_x0_5": 1_366_792, "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624, "shufflenet_v2_x2_0": 7_393_996,
}  # fmt: skip
# Rounded figures the papers (or the official code's README) print, in millions.
ROUNDED_PARAMS = {
    "mobilenet_v1": 4.2,
    "shufflenet_v1_g3": 1.9,
    "shufflenet_v1_g8": 2.4,
    "shufflenet_v2_x0_5": 1.4,
    "shufflenet_v2_x1_0": 2.3,
    "shufflenet_v2_x1_5": 3.5,
    "shufflenet_v2_x2_0": 7.4,
}
# (paper GMACs, relative tolerance). MobileNet v1 569M, v2 300M (docs/recipes.md); ShuffleNet v1
# Table 1 complexity row (g=3: 137-138M in docs/recipes.md); v2 Table 5 (41/146/299/591M).
GMACS = {
    "mobilenet_v1": (0.569, 0.005), "mobilenet_v2": (0.300, 0.01),
    "shufflenet_v1_g1": (0.143, 0.02), "shufflenet_v1_g2": (0.140, 0.02),
    "shufflenet_v1_g3": (0.1375, 0.005), "shufflenet_v1_g4": (0.133, 0.02),
    "shufflenet_v1_g8": (0.137, 0.02),
    "shufflenet_v2_x0_5": (0.041, 0.02), "shufflenet_v2_x1_0": (0.146, 0.02),
    "shufflenet_v2_x1_5": (0.299, 0.02), "shufflenet_v2_x2_0": (0.591, 0.02),
}  # fmt: skip
# torchvision's _ops metadata, printed to 3 decimals.
TORCHVISION_GMACS = {
    "mobilenet_v2": 0.301,
    "shufflenet_v2_x0_5": 0.04,
    "shufflenet_v2_x1_0": 0.145,
    "shufflenet_v2_x1_5": 0.296,
    "shufflenet_v2_x2_0": 0.583,
}


def _build(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return get_model(name, **kwargs).eval()


def _gmacs(model: nn.Module, size: int = 224) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 2 / 1e9


@pytest.fixture(scope="module", params=MOBILE)
def built(request: pytest.FixtureRequest) -> tuple[str, nn.Module, Tensor, float]:
    """Each network once, with one forward at 224×224 (counted by FlopCounterMode)."""
    name = request.param
    model = _build(name)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.randn(1, 3, 224, 224))
    return name, model, out, counter.get_total_flops() / 2 / 1e9


def test_all_registered() -> None:
    assert set(MOBILE) <= set(list_models())
    assert list_models("shufflenet_v1_*") == SHUFFLE_V1


def test_forward_shape(built: tuple[str, nn.Module, Tensor, float]) -> None:
    name, _, out, _ = built
    assert out.shape == (1, 1000), name
    assert torch.isfinite(out).all()


def test_param_count(built: tuple[str, nn.Module, Tensor, float]) -> None:
    name, model, _, _ = built
    assert count_params(model) == PARAMS[name] == model_info(name).params
    if name in ROUNDED_PARAMS:
        assert round(count_params(model) / 1e6, 1) == ROUNDED_PARAMS[name]


def test_macs(built: tuple[str, nn.Module, Tensor, float]) -> None:
    name, _, _, gmacs = built
    paper, rel = GMACS[name]
    assert gmacs == pytest.approx(paper, rel=rel)
    assert model_info(name).paper_macs == pytest.approx(paper, abs=6e-4)
    assert gmacs == pytest.approx(model_info(name).gmacs, abs=6e-5)  # ours, 4 decimals
    if name in TORCHVISION_GMACS:
        assert gmacs == pytest.approx(TORCHVISION_GMACS[name], abs=6e-4)


@pytest.mark.parametrize("name", TWINS)
def test_torchvision_equivalence(name: str) -> None:
    """A random torchvision twin (BN statistics and affine parameters perturbed too) copied into
    ours in state_dict order gives the same logits in eval mode; the names match as well."""
    torch.manual_seed(1)
    twin = getattr(torchvision.models, model_info(name).torchvision_twin)(weights=None)
    randomize_batchnorm_(twin)
    ours = get_model(name)
    copy_weights_by_order(twin, ours)
    assert list(ours.state_dict()) == list(twin.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, got = twin.eval()(x), ours.eval()(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name", ["mobilenet_v1", "mobilenet_v2", "shufflenet_v1_g3", "shufflenet_v2_x1_0"]
)
def test_gradients_reach_first_conv(name: str) -> None:
    model = _build(name, num_classes=10).train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([1, 7]))
    loss.backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 3
    grad = first.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_mobilenet_v1_table() -> None:
    """Table 1: 13 depthwise 3×3 layers, five of stride 2 (the last one's printed "s2" is a typo),
    so the 224 input leaves a 7×7×1024 map for the 7×7 average pool."""
    model = _build("mobilenet_v1")
    depthwise = [
        m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1
    ]
    assert len(depthwise) == 13
    assert [m.stride[0] for m in depthwise].count(2) == 4  # + the stem's stride-2 full conv
    assert depthwise[-1].stride == (1, 1)
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 224, 224)).shape == (1, 1024, 7, 7)


@pytest.mark.parametrize(
    ("alpha", "mmacs", "mparams"), [(0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5)]
)
def test_mobilenet_v1_width_multiplier(alpha: float, mmacs: int, mparams: float) -> None:
    """Width multiplier rows of the paper's Table 6 (recalled, not in docs/recipes.md): MACs and
    parameters shrink roughly as α²."""
    model = _build("mobilenet_v1", width_mult=alpha)
    assert round(_gmacs(model) * 1000) == mmacs
    assert round(count_params(model) / 1e6, 1) == mparams


def test_mobilenet_v2_blocks() -> None:
    """Table 2: 17 bottlenecks; residuals only where stride is 1 and channels agree (n − 1 per
    row: 0+1+2+3+2+2+0 = 10); the projection is linear (ends in BN, no ReLU6)."""
    model = _build("mobilenet_v2")
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    assert sum(b.use_residual for b in blocks) == 10
    assert all(isinstance(b.conv[-1], nn.BatchNorm2d) for b in blocks)
    assert len(blocks[0].conv) == 3  # t = 1: no expansion layer


@pytest.mark.parametrize("alpha", [0.5, 1.4])
def test_mobilenet_v2_width_multiplier_matches_torchvision(alpha: float) -> None:
    ours = get_model("mobilenet_v2", width_mult=alpha)
    twin = torchvision.models.mobilenet_v2(width_mult=alpha)
    assert count_params(ours) == count_params(twin)
    assert ours.last_channels == (1280 if alpha < 1 else 1792)  # the last conv is never thinned


def test_channel_shuffle() -> None:
    """Fig. 1c: channels (g, n) → transpose → flatten; n groups of g undo it."""
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    y = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(channel_shuffle(channel_shuffle(y, 3), 4), y)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_shufflenet_v1_units(groups: int) -> None:
    """Stage widths from Table 1; stage 2's first 1×1 is dense, every other 1×1 has g groups; the
    bottleneck is a quarter of the output; stride-2 units concatenate the 3×3/2 average pool."""
    model = _build(f"shufflenet_v1_g{groups}")
    widths = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}[groups]
    stages = (model.stage2, model.stage3, model.stage4)
    assert [len(s) for s in stages] == [4, 8, 4]
    assert [s[-1].gconv2[0].out_channels for s in stages] == [widths, 2 * widths, 4 * widths]
    units = [u for u in model.modules() if isinstance(u, ShuffleUnit)]
    assert units[0].gconv1[0].groups == 1
    assert all(u.gconv1[0].groups == groups for u in units[1:])
    assert all(u.gconv2[0].groups == groups for u in units)
    assert all(u.gconv1[0].out_channels * 4 in (widths, 2 * widths, 4 * widths) for u in units)
    first = model.stage3[0]
    x = torch.relu(torch.randn(1, widths, 14, 14))
    with torch.no_grad():
        out = first(x)
    assert out.shape == (1, 2 * widths, 7, 7)
    torch.testing.assert_close(out[:, :widths], nn.functional.avg_pool2d(x, 3, 2, 1))


def test_shufflenet_v2_unit_split() -> None:
    """Fig. 3c: a stride-1 unit passes half its channels through untouched (before the shuffle)."""
    unit = _build("shufflenet_v2_x1_0").stage3[1]
    x = torch.randn(1, 232, 14, 14)
    with torch.no_grad():
        out = unit(x)
    # After shuffling 2 groups, the untouched half sits at the even channels.
    torch.testing.assert_close(out[:, 0::2], x[:, :116])
