"""AlexNet, ZFNet, VGG and GoogLeNet: shapes, parameter and MAC counts against docs/recipes.md,
weight for weight equivalence with torchvision's twins, the papers' inits and ablation switches."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from classicnets.models import get_model, list_models, model_info
from classicnets.models.vgg import VGG, transfer_from_config_a
from model_utils import copy_weights_by_order, count_macs, count_params, small_vgg

CLASSIC = [
    "alexnet", "alexnet_owt", "zfnet", "googlenet", "googlenet_bn",
    "vgg11", "vgg11_lrn", "vgg13", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
]  # fmt: skip
TWINS = [name for name in CLASSIC if model_info(name).torchvision_twin]

# docs/recipes.md numbers, restated so a typo in a registry entry cannot pass its own test.
RECIPE_PARAMS = {
    "alexnet": 60_965_224, "alexnet_owt": 61_100_840, "zfnet": 62_357_608,
    "vgg11": 132_863_336, "vgg11_lrn": 132_863_336, "vgg13": 133_047_848,
    "vgg16": 138_357_544, "vgg19": 143_667_240,
    "googlenet_bn": 6_624_904,  # torchvision metadata, aux heads excluded
}  # fmt: skip
RECIPE_GMACS = {
    "alexnet": 0.724, "alexnet_owt": 0.714, "zfnet": 1.168, "googlenet_bn": 1.498,
    "vgg11": 7.609, "vgg11_lrn": 7.609, "vgg13": 11.308, "vgg16": 15.470, "vgg19": 19.632,
}  # fmt: skip

# GoogLeNet Table 1 as docs/recipes.md gives it: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5,
# pool proj, with the block's input size and channels.
GOOGLENET_TABLE = [
    (28, 192, (64, 96, 128, 16, 32, 32)), (28, 256, (128, 128, 192, 32, 96, 64)),
    (14, 480, (192, 96, 208, 16, 48, 64)), (14, 512, (160, 112, 224, 24, 64, 64)),
    (14, 512, (128, 128, 256, 24, 64, 64)), (14, 512, (112, 144, 288, 32, 64, 64)),
    (14, 528, (256, 160, 320, 32, 128, 128)), (7, 832, (256, 160, 320, 32, 128, 128)),
    (7, 832, (384, 192, 384, 48, 128, 128)),
]  # fmt: skip


def _build(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    kw = {"aux_logits": False} if name.startswith("googlenet") else {}
    return get_model(name, **(kw | kwargs)).eval()


@pytest.fixture(scope="module", params=CLASSIC)
def built(request: pytest.FixtureRequest) -> tuple[str, nn.Module, Tensor, float]:
    """Each network once on the meta device (no init, no arithmetic), with one forward at its paper
    input size counted by FlopCounterMode. Real forwards are in the numeric tests below."""
    name = request.param
    with torch.device("meta"):
        model = _build(name)
    size = model_info(name).input_size
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.empty(1, 3, size, size, device="meta"))
    return name, model, out, counter.get_total_flops() / 2 / 1e9


def test_all_classic_models_registered() -> None:
    assert set(CLASSIC) <= set(list_models())
    assert list_models("vgg*_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def test_forward_shape(built: tuple[str, nn.Module, Tensor, float]) -> None:
    name, _, out, _ = built
    assert out.shape == (1, 1000), name


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "googlenet"])
def test_forward_numeric(name: str) -> None:
    """A real forward of the networks without a torchvision twin (the twins run in the
    equivalence test; vgg11_lrn is vgg11 plus AlexNet's LRN): finite logits that depend on the
    input."""
    model = _build(name)
    size = model_info(name).input_size
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])


def test_param_count_matches_registry_and_recipes(
    built: tuple[str, nn.Module, Tensor, float],
) -> None:
    name, model, _, _ = built
    assert count_params(model) == model_info(name).params
    if name in RECIPE_PARAMS:
        assert count_params(model) == RECIPE_PARAMS[name]


def test_macs_match_recipes(built: tuple[str, nn.Module, Tensor, float]) -> None:
    name, _, _, gmacs = built
    assert gmacs == pytest.approx(model_info(name).gmacs, abs=6e-4)
    if name == "googlenet":  # the paper's "1.5 billion" is a budget; see the dedicated test
        assert gmacs == pytest.approx(model_info(name).paper_macs, rel=0.06)
    if name in RECIPE_GMACS:
        assert gmacs == pytest.approx(RECIPE_GMACS[name], rel=0.005)


def test_bn_variants_add_exactly_the_bn_affine_params() -> None:
    """VGG-BN = VGG + a BN γ and β per conv channel (Table 1 widths)."""
    widths_a = [64, 128, 256, 256, 512, 512, 512, 512]
    widths_b = [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    widths = {
        11: widths_a,
        13: widths_b,
        16: [*widths_b, 256, 512, 512],
        19: [*widths_b, 256, 256, 512, 512, 512, 512],
    }
    for depth, convs in widths.items():
        assert len(convs) + 3 == depth
        extra = model_info(f"vgg{depth}_bn").params - model_info(f"vgg{depth}").params
        assert extra == 2 * sum(convs)


def test_googlenet_params_and_macs_from_table_1() -> None:
    """Recompute GoogLeNet (no aux heads) by hand from Table 1: conv + bias parameters and
    multiply-adds, against the built network."""
    params = (7 * 7 * 3 + 1) * 64 + (64 + 1) * 64 + (9 * 64 + 1) * 192 + (1024 + 1) * 1000
    macs = 112 * 112 * 64 * 7 * 7 * 3 + 56 * 56 * 64 * 64 + 56 * 56 * 192 * 9 * 64 + 1024 * 1000
    for hw, cin, (c1, r3, c3, r5, c5, pp) in GOOGLENET_TABLE:
        weights = cin * c1 + cin * r3 + r3 * 9 * c3 + cin * r5 + r5 * 25 * c5 + cin * pp
        params += weights + c1 + r3 + c3 + r5 + c5 + pp
        macs += hw * hw * weights
    model = _build("googlenet")
    assert count_params(model) == params == 6_998_552
    assert count_macs(model, 224) == pytest.approx(macs / 1e9, rel=1e-9)
    # Table 1's params column sums to 6,797.7 "K" with K = 1024 (3a: 159K = 163,328 weights).
    assert params == pytest.approx(6_797.7 * 1024, rel=0.01)
    heads = sum((cin + 1) * 128 + (2048 + 1) * 1024 + (1024 + 1) * 1000 for cin in (512, 528))
    assert count_params(get_model("googlenet")) == params + heads


@pytest.mark.parametrize("name", [n for n in TWINS if n != "googlenet_bn"])  # GoogLeNet: below
def test_equivalent_to_torchvision_twin(name: str) -> None:
    twin_name = model_info(name).torchvision_twin
    assert twin_name is not None
    torch.manual_seed(1)
    twin = getattr(torchvision.models, twin_name)(weights=None).eval()
    with torch.device("meta"):  # ours takes the twin's tensors, so skip its own init
        ours = _build(name)
    copy_weights_by_order(twin, ours, assign=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, got = twin(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_googlenet_bn_equivalent_to_torchvision_in_both_modes() -> None:
    """Eval: identical logits. Training, with dropout off: ours (main, aux1, aux2) = torchvision's
    (main, aux2, aux1) reordered, and BN running statistics move identically."""
    assert model_info("googlenet_bn").torchvision_twin == "googlenet"
    torch.manual_seed(2)
    twin = torchvision.models.googlenet(weights=None, init_weights=True, transform_input=False)
    with torch.device("meta"):
        ours = get_model("googlenet_bn")
    copy_weights_by_order(twin, ours, assign=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), twin.eval()(x), rtol=1e-5, atol=1e-6)
    for net in (twin, ours):
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        net.train()
    with torch.no_grad():
        expected, got = twin(x), ours(x)
    assert isinstance(got, tuple) and len(got) == 3
    for g, e in zip(
        got, (expected.logits, expected.aux_logits1, expected.aux_logits2), strict=True
    ):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.conv1.bn.running_mean, twin.conv1.bn.running_mean)


def test_googlenet_outputs_three_in_train_one_in_eval() -> None:
    torch.manual_seed(0)
    model = get_model("googlenet").train()
    x = torch.randn(1, 3, 224, 224)
    outs = model(x)
    assert isinstance(outs, tuple) and [o.shape for o in outs] == [(1, 1000)] * 3
    (outs[0].sum() + outs[1].sum() + outs[2].sum()).backward()
    for layer in (model.conv1.conv, model.aux1.fc2, model.aux2.conv.conv):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(x).shape == (1, 1000)
    no_aux = _meta("googlenet", aux_logits=False).train()
    assert no_aux.aux1 is None
    assert no_aux(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)


def test_googlenet_paper_vs_torchvision_style() -> None:
    paper, bn = get_model("googlenet"), get_model("googlenet_bn")
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert bn.inception3a.branch3[1].conv.kernel_size == (3, 3)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper.modules()) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert paper.dropout.p == 0.4 and paper.aux1.dropout.p == 0.7
    assert isinstance(paper.aux1.pool, nn.AvgPool2d) and paper.aux1.pool.kernel_size == 5


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg11_bn"])  # GoogLeNet: below
def test_gradients_reach_first_conv(name: str) -> None:
    model = _build(name).train()
    size = model_info(name).input_size
    out = model(torch.randn(1, 3, size, size))
    out = out[0] if isinstance(out, tuple) else out
    torch.nn.functional.cross_entropy(out, torch.tensor([3])).backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad is not None
    assert torch.isfinite(first.weight.grad).all() and first.weight.grad.abs().sum() > 0


def _std_close(t: Tensor, std: float, rel: float = 0.02) -> bool:
    """Standard deviation within ``rel`` of ``std``, mean within 5 standard errors of 0."""
    mean_ok = abs(t.mean().item()) < 5 * std / t.numel() ** 0.5
    return abs(t.std().item() - std) < rel * std and mean_ok


def test_alexnet_paper_init() -> None:
    model = _build("alexnet")
    layers = {**dict(model.features.named_children()), **dict(model.classifier.named_children())}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = layers[name]
        assert _std_close(layer.weight, 0.01, rel=0.1 if name == "conv1" else 0.02), name
        expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == expected), name


def test_zfnet_paper_init() -> None:
    model = _build("zfnet")
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert torch.all(m.bias == 0)
    assert _std_close(model.classifier.fc6.weight, 0.01)


def test_vgg_inits() -> None:
    torch.manual_seed(0)
    paper = small_vgg("vgg11")
    assert _std_close(paper.features[3].weight, 0.01, rel=0.05)  # 64 → 128, 73,728 weights
    assert all(torch.all(m.bias == 0) for m in paper.modules() if isinstance(m, nn.Conv2d))
    glorot = small_vgg("vgg11", init="glorot")
    w = glorot.features[3].weight  # fan_in 576, fan_out 1152: U(±√(6/1728))
    bound = math.sqrt(6 / (576 + 1152))
    assert w.abs().max() <= bound and _std_close(w, bound / math.sqrt(3), rel=0.05)
    with pytest.raises(ValueError, match="init"):
        get_model("vgg11", init="he")


def test_googlenet_caffe_init() -> None:
    model = _build("googlenet", aux_logits=True)
    conv = model.inception4a.branch2[1].conv  # 3×3 from 96 channels: U(±√(3/864))
    bound = math.sqrt(3 / conv.weight[0].numel())
    assert conv.weight.abs().max() <= bound and _std_close(conv.weight, bound / math.sqrt(3), 0.05)
    assert torch.all(conv.bias == 0.2) and torch.all(model.aux1.fc1.bias == 0.2)
    assert torch.all(model.fc.bias == 0) and torch.all(model.aux2.fc2.bias == 0)


def test_vgg_transfer_from_config_a() -> None:
    """A's convs 1-4 land on D's convs 1, 3, 5, 6 (first of stage 1, first of stage 2, first two
    of stage 3); A's three FC layers on D's."""
    torch.manual_seed(0)
    net_a, net_d = small_vgg("vgg11"), small_vgg("vgg16")
    convs_a = [m for m in net_a.features if isinstance(m, nn.Conv2d)]
    convs_d = [m for m in net_d.features if isinstance(m, nn.Conv2d)]
    before = [c.weight.clone() for c in convs_d]
    transfer_from_config_a(net_a, net_d)
    for i_a, i_d in zip(range(4), (0, 2, 4, 5), strict=True):
        assert torch.equal(convs_a[i_a].weight, convs_d[i_d].weight)
        assert torch.equal(convs_a[i_a].bias, convs_d[i_d].bias)
    for i_d in (1, 3, 6, 7):  # the layers A lacks stay random
        assert torch.equal(convs_d[i_d].weight, before[i_d])
    assert torch.equal(net_a.classifier[0].weight, net_d.classifier[0].weight)
    assert torch.equal(net_a.classifier[6].bias, net_d.classifier[6].bias)


def test_vgg_dense_evaluation_is_the_classifier_slid_over_7x7_windows() -> None:
    """Section 3.2: FC layers as convolutions = the FC classifier applied to every 7×7 window of
    the last feature map, the scores averaged."""
    torch.manual_seed(0)
    model = VGG(nn.Sequential(), num_classes=10).eval()
    feats = torch.randn(1, 512, 9, 9)
    with torch.no_grad():
        dense = model(feats)
        windows = [
            model.classifier(feats[:, :, i : i + 7, j : j + 7].flatten(1))
            for i in range(3)
            for j in range(3)
        ]
    torch.testing.assert_close(dense, torch.stack(windows).mean(0), rtol=1e-4, atol=1e-6)


def _meta(name: str, **kwargs: object) -> nn.Module:
    """Structure only: built on the meta device, where forwards check shapes without arithmetic."""
    with torch.device("meta"):
        return _build(name, **kwargs)


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_alexnet_ablations() -> None:
    x = torch.empty(1, 3, 227, 227, device="meta")
    paper = _meta("alexnet")
    assert _count(paper, nn.LocalResponseNorm) == 2
    assert paper.features.norm1.alpha == 5e-4 and paper.features.norm1.k == 2.0
    assert _count(paper, nn.ReLU) == 7 and _count(paper, nn.Tanh) == 0
    assert [m.kernel_size for m in paper.modules() if isinstance(m, nn.MaxPool2d)] == [3] * 3

    no_lrn = _meta("alexnet", lrn=False)
    assert _count(no_lrn, nn.LocalResponseNorm) == 0 and no_lrn(x).shape == (1, 1000)

    tanh = _meta("alexnet", activation="tanh")
    assert _count(tanh, nn.Tanh) == 7 and _count(tanh, nn.ReLU) == 0

    flat_pool = _meta("alexnet", overlapping_pool=False)  # 55 → 27 → 13 → 6 still
    pools = [m for m in flat_pool.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    assert flat_pool.features(x).shape == (1, 256, 6, 6)
    assert count_params(flat_pool) == 60_965_224

    dense = _meta("alexnet", groups=1)
    assert dense.features.conv2.groups == 1 and paper.features.conv4.groups == 2
    assert count_params(dense) == 62_378_344

    padded = _meta("alexnet", conv1_padding=2)  # a 224 crop, torchvision's way
    assert padded.features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 256, 6, 6)
    with pytest.raises(RuntimeError):  # without the padding a 224 crop does not fit fc6
        paper(torch.empty(1, 3, 224, 224, device="meta"))

    with pytest.raises(ValueError, match="groups"):
        get_model("alexnet", groups=4)
    with pytest.raises(ValueError, match="activation"):
        get_model("alexnet", activation="sigmoid")


def test_zfnet_feature_map_sizes() -> None:
    """Figure 3: 110 → 55 → 26 → 13 → 6."""
    model = _meta("zfnet")
    sizes = {}
    x = torch.empty(1, 3, 224, 224, device="meta")
    for name, layer in model.features.named_children():
        x = layer(x)
        sizes[name] = x.shape[-1]
    assert [sizes[k] for k in ("conv1", "pool1", "conv2", "pool2", "pool5")] == [110, 55, 26, 13, 6]


def test_vgg_lrn_variant_has_one_lrn_after_conv1() -> None:
    model = _meta("vgg11_lrn")
    kinds = [type(m) for m in model.features[:4]]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.LocalResponseNorm, nn.MaxPool2d]
    assert _count(_meta("vgg11"), nn.LocalResponseNorm) == 0


def test_num_classes_and_in_channels() -> None:
    for name in ("alexnet", "zfnet", "googlenet", "vgg11", "googlenet_bn"):
        size = model_info(name).input_size
        model = _meta(name, num_classes=10, in_channels=1)
        assert model(torch.empty(1, 1, size, size, device="meta")).shape == (1, 10)
