"""LeNet-5 as the 1998 paper draws it, and the registry every model goes through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from classicnets.models import get_model, list_models, model_info, register_model
from classicnets.models.lenet import C3_TABLE, DIGIT_BITMAPS, squash
from classicnets.models.registry import UnknownModelError
from model_utils import count_params


@pytest.fixture(scope="module")
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return get_model("lenet5")


def test_sixty_thousand_trainable_parameters_layer_by_layer(lenet: nn.Module) -> None:
    # Section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164; the RBF is fixed.
    per_layer = {
        name: count_params(getattr(lenet, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6")
    }
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    assert count_params(lenet) == 60_000 == model_info("lenet5").paper_params
    assert model_info("lenet5").params == 60_000
    assert count_params(lenet.output) == 0


def test_shapes_follow_the_figure(lenet: nn.Module) -> None:
    x = torch.randn(2, 1, 32, 32)
    c1 = lenet.c1(x)
    c3 = lenet.c3(lenet.s2(c1))
    assert c1.shape == (2, 6, 28, 28) and c3.shape == (2, 16, 10, 10)
    assert lenet(x).shape == (2, 10)
    # A slice is a plain chain of the same layers, e.g. the 84 F6 features before the RBF.
    features = lenet[:-1]
    assert type(features) is nn.Sequential and features[-1] is lenet.f6_squash
    assert features(x).shape == (2, 84)


def test_c3_reads_only_the_maps_of_table_one(lenet: nn.Module) -> None:
    s2 = torch.randn(1, 6, 14, 14, requires_grad=True)
    c3 = lenet.c3(s2)
    for out_map, inputs in enumerate(C3_TABLE):
        (grad,) = torch.autograd.grad(c3[0, out_map].sum(), s2, retain_graph=True)
        reads = {c for c in range(6) if grad[0, c].abs().sum() > 0}
        assert reads == set(inputs), out_map


def test_squash_and_rbf_output(lenet: nn.Module) -> None:
    # Appendix A: f(a) = 1.7159 tanh(2a/3), so f(±1) = ±1 — the RBF targets sit in the linear range.
    assert squash(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=1e-4)
    centers = lenet.output.centers
    assert centers.shape == (10, 84) and set(centers.unique().tolist()) == {-1.0, 1.0}
    assert all(len(bitmap) == 84 for bitmap in DIGIT_BITMAPS)
    x = torch.randn(3, 84)
    by_hand = -((x[:, None, :] - centers[None]) ** 2).sum(-1)
    assert torch.allclose(lenet.output(x), by_hand, atol=1e-4)


def test_init_is_uniform_in_2_4_over_fan_in(lenet: nn.Module) -> None:
    for layer, fan_in in ((lenet.c1, 25), (lenet.c5, 16 * 25), (lenet.f6, 120)):
        bound = 2.4 / fan_in
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # spread over the whole interval
    # the recipe's alternative (Efficient BackProp): standard deviation fan_in^-1/2
    torch.manual_seed(0)
    efficient = get_model("lenet5", init="sqrt_fan_in")
    for layer, fan_in in ((efficient.c1, 25), (efficient.c5, 16 * 25), (efficient.f6, 120)):
        assert layer.weight.std().item() == pytest.approx(fan_in**-0.5, rel=0.1)
    with pytest.raises(ValueError, match="unknown LeNet-5 init 'xavier'"):
        get_model("lenet5", init="xavier")


def test_gradients_reach_the_first_layer_and_other_shapes(lenet: nn.Module) -> None:
    lenet.zero_grad()
    lenet(torch.randn(2, 1, 32, 32)).sum().backward()
    assert lenet.c1.weight.grad.abs().sum() > 0
    rgb = get_model("lenet5", num_classes=26, in_channels=3)
    assert rgb(torch.randn(1, 3, 32, 32)).shape == (1, 26)


def test_modern_variant() -> None:
    modern = get_model("lenet5_modern")
    assert count_params(modern) == 61_706
    assert any(isinstance(m, nn.MaxPool2d) for m in modern.modules())
    assert not any(isinstance(m, nn.Tanh) for m in modern.modules())


def test_registry_lists_refuses_duplicates_and_unknown_names() -> None:
    assert list_models("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert {"lenet5", "alexnet", "vgg16", "googlenet", "mobilenet_v2"} <= set(list_models())
    with pytest.raises(ValueError, match="registered twice"):
        register_model("lenet5", input_size=32, paper="again")(lambda: nn.Identity())
    with pytest.raises(UnknownModelError, match=r"choose one of: .*lenet5"):
        get_model("lenet6")
