"""ClassificationModule behaviour that every architecture relies on."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch
from lightning import Trainer
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models import register_model
from classicnets.module import ClassificationModule, scaled_learning_rate
from classicnets.optim import PassWiseLR


class TwoHeads(nn.Module):
    """A tiny network with two auxiliary heads, returned in training mode only (as GoogLeNet)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.main = nn.Linear(in_channels * 4, num_classes)
        self.aux1 = nn.Linear(in_channels * 4, num_classes)
        self.aux2 = nn.Linear(in_channels * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        x = x.flatten(1)
        if self.training:
            return self.main(x), self.aux1(x), self.aux2(x)
        return self.main(x)


register_model("test_two_heads", input_size=2, paper="test")(
    lambda *, num_classes=10, in_channels=1: TwoHeads(num_classes, in_channels)
)


def module(**kwargs) -> ClassificationModule:
    defaults = {"net": {"name": "test_two_heads"}, "num_classes": 10, "in_channels": 1}
    return ClassificationModule(**(defaults | kwargs))


def test_aux_losses_are_weighted_into_the_main_loss() -> None:
    m = module(aux_loss_weights=[0.3, 0.3])
    m.trainer = Trainer(logger=False, accelerator="cpu", devices=1)
    x, y = torch.randn(8, 1, 2, 2), torch.randint(0, 10, (8,))
    main, a1, a2 = m.net.train()(x)
    loss, logits = m._loss((main, a1, a2), y)
    by_hand = F.cross_entropy(main, y) + 0.3 * F.cross_entropy(a1, y) + 0.3 * F.cross_entropy(a2, y)
    assert torch.allclose(loss, by_hand) and logits is main


def test_aux_outputs_without_weights_are_an_error() -> None:
    m = module(aux_loss_weights=[0.3])
    outputs = m.net.train()(torch.randn(2, 1, 2, 2))
    with pytest.raises(ValueError, match="aux_loss_weights"):
        m._loss(outputs, torch.zeros(2, dtype=torch.long))


def test_multi_crop_batches_average_the_softmax_over_crops() -> None:
    m = module().eval()
    crops = torch.randn(3, 10, 1, 2, 2)  # (B, n_crops, C, H, W)
    with torch.no_grad():
        scores = m(crops)
        per_crop = m.net(crops.flatten(0, 1)).softmax(-1).view(3, 10, -1)
    assert torch.allclose(scores.exp(), per_crop.mean(1), atol=1e-6)
    assert torch.allclose(scores.exp().sum(-1), torch.ones(3), atol=1e-5)


def configured(m: ClassificationModule, steps: int = 40, epochs: int = 10):
    """configure_optimizers as Lightning calls it, for a run of ``steps`` batches."""
    m.trainer = SimpleNamespace(estimated_stepping_batches=steps, max_epochs=epochs)
    return m.configure_optimizers()


def test_linear_scaling_rule() -> None:
    assert scaled_learning_rate(0.1, 8192, 256) == pytest.approx(3.2)  # Goyal et al. 2017
    sgd = partial(torch.optim.SGD, lr=0.01)
    same = configured(module(optimizer=sgd, reference_batch_size=32, batch_size=32))
    assert same.param_groups[0]["lr"] == pytest.approx(0.01)
    off = configured(module(optimizer=sgd, reference_batch_size=32, batch_size=64, scale_lr=False))
    assert off.param_groups[0]["lr"] == pytest.approx(0.01)
    smaller = configured(module(optimizer=sgd, reference_batch_size=32, batch_size=16))
    assert smaller.param_groups[0]["lr"] == pytest.approx(0.005)  # no warm-up when smaller


def test_larger_batch_warms_up_to_the_scaled_rate() -> None:
    m = module(optimizer=partial(torch.optim.SGD, lr=0.01), reference_batch_size=32, batch_size=128)
    config = configured(m, steps=40, epochs=10)  # warm-up: 5 of 10 epochs = 20 steps
    optimizer, warmup = config["optimizer"], config["lr_scheduler"]
    assert warmup["interval"] == "step" and warmup["scheduler"].total_iters == 20
    lrs = []
    for _ in range(25):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        warmup["scheduler"].step()
    assert lrs[0] < 1e-4 and lrs == sorted(lrs)
    assert lrs[-1] == pytest.approx(0.04)  # 0.01 x 128 / 32


def test_pass_wise_rate_table() -> None:
    # LeNet-5, section III.A: 5e-4 (passes 1-2), 2e-4 (3-5), 1e-4 (6-8), 5e-5 (9-12), 1e-5 after.
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=5e-4)
    table = [[1, 5e-4], [3, 2e-4], [6, 1e-4], [9, 5e-5], [13, 1e-5]]
    scheduler = PassWiseLR(optimizer, table)
    rates = []
    for _ in range(14):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 2
    assert rates == pytest.approx(expected)


def test_pass_wise_table_chains_with_the_warm_up() -> None:
    # Batch 32 against LeNet-5's per-pattern recipe: x32 and a warm-up over steps, under the table.
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    table = PassWiseLR(optimizer, [[1, 5e-4], [3, 2e-4]])
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0 / 1000, 1.0, total_iters=40)
    end_of_pass = []
    for _ in range(4):  # passes of 10 steps
        for _ in range(10):
            optimizer.step()
            warmup.step()
        end_of_pass.append(optimizer.param_groups[0]["lr"])
        table.step()
    # the warm-up's ramp times the table's factor, never more than the table allows
    expected = [0.25, 0.5, 0.75 * 0.4, 1.0 * 0.4]
    assert end_of_pass == pytest.approx(expected, rel=0.01)


def test_non_finite_loss_stops_training_naming_the_step() -> None:
    m = module(aux_loss_weights=[0.3, 0.3])
    m.trainer = Trainer(logger=False, accelerator="cpu", devices=1)
    x, y = torch.full((2, 1, 2, 2), float("nan")), torch.zeros(2, dtype=torch.long)
    with pytest.raises(FloatingPointError, match="global step"):
        m.training_step((x, y), 0)


def test_weight_decay_spares_the_named_parameter_kinds() -> None:
    from classicnets.models import get_model
    from classicnets.module import parameter_groups

    net = get_model("mobilenet_v1")
    decay, spared = parameter_groups(net, ["depthwise"])
    depthwise = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 13 and {id(p) for p in depthwise} == {id(p) for p in spared["params"]}
    assert spared["weight_decay"] == 0.0
    net = get_model("shufflenet_v2_x0_5")
    decay, spared = parameter_groups(net, ["norm", "bias"])
    norms = [p for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    assert {id(p) for p in norms} <= {id(p) for p in spared["params"]}
    assert all(p.ndim > 1 for p in decay["params"])  # only conv / linear weights decay
    total = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for g in (decay, spared) for p in g["params"]) == total
    with pytest.raises(ValueError, match="unknown"):
        parameter_groups(net, ["bn"])
