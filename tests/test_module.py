"""ClassificationModule behaviour that every architecture relies on."""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning import Trainer
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models import register_model
from classicnets.optim import PassWiseLR
from classicnets.optim.build import scaled_learning_rate
from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from classicnets.training.module import ClassificationModule
from classicnets.training.per_pattern import PerPatternModule
from run_helpers import TINY


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


DEFAULTS = {"net": {"name": "test_two_heads"}, "num_classes": 10, "in_channels": 1}


def module(**kwargs) -> ClassificationModule:
    return ClassificationModule(**(DEFAULTS | kwargs))


def per_pattern_module(**kwargs) -> PerPatternModule:
    return PerPatternModule(**(DEFAULTS | kwargs))


def test_aux_losses_are_weighted_into_the_main_loss() -> None:
    m = module(aux_loss_weights=[0.3, 0.3])
    m.trainer = Trainer(logger=False, accelerator="cpu", devices=1)
    x, y = torch.randn(8, 1, 2, 2), torch.randint(0, 10, (8,))
    main, a1, a2 = m.net.train()(x)
    loss, logits = m.compute_loss((main, a1, a2), y)
    by_hand = F.cross_entropy(main, y) + 0.3 * F.cross_entropy(a1, y) + 0.3 * F.cross_entropy(a2, y)
    assert torch.allclose(loss, by_hand) and logits is main


def test_aux_outputs_without_weights_are_an_error() -> None:
    m = module(aux_loss_weights=[0.3])
    outputs = m.net.train()(torch.randn(2, 1, 2, 2))
    with pytest.raises(ValueError, match="aux_loss_weights"):
        m.compute_loss(outputs, torch.zeros(2, dtype=torch.long))


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
    for batch, scale_lr, lr in [(32, True, 0.01), (64, False, 0.01), (16, True, 0.005)]:
        m = module(optimizer=sgd, reference_batch_size=32, batch_size=batch, scale_lr=scale_lr)
        [optimizer], schedulers = configured(m)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)
        assert schedulers == []  # no warm-up unless the batch grows
        assert optimizer.defaults["lr"] == pytest.approx(lr)  # built with it, not rewritten


def test_larger_batch_warms_up_from_the_papers_rate_to_the_scaled_rate() -> None:
    m = module(optimizer=partial(torch.optim.SGD, lr=0.01), reference_batch_size=32, batch_size=128)
    [optimizer], [warmup] = configured(m, steps=40, epochs=10)  # warm-up: 5 of 10 epochs = 20 steps
    assert warmup["interval"] == "step" and warmup["scheduler"].total_iters == 20
    lrs = []
    for _ in range(25):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        warmup["scheduler"].step()
    # Goyal et al. 2017, section 2.2: from the paper's rate η = 0.01 up by a constant amount.
    assert lrs[0] == pytest.approx(0.01)
    steps = [b - a for a, b in itertools.pairwise(lrs[:21])]
    assert steps == pytest.approx([0.03 / 20] * 20)
    assert lrs[20:] == pytest.approx([0.04] * 5)  # 0.01 x 128 / 32


def test_schedules_with_total_steps_get_the_length_of_the_run() -> None:
    class LinearToZero(torch.optim.lr_scheduler.LambdaLR):
        def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
            self.total_steps = total_steps
            super().__init__(optimizer, lambda step: 1 - step / total_steps)

    m = module(optimizer=partial(torch.optim.SGD, lr=0.1), scheduler=LinearToZero)
    _, [config] = configured(m, steps=40)
    assert config["scheduler"].total_steps == 40
    per_pattern = per_pattern_module(
        optimizer=partial(torch.optim.SGD, lr=0.1), scheduler=LinearToZero, updates_per_step=8
    )
    _, [config] = configured(per_pattern, steps=40)
    assert config["scheduler"].total_steps == 320  # Lightning counts batches: 8 updates each


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
    m = module(aux_loss_weights=[0.3, 0.3], check_every_n_steps=3)
    m.trainer = Trainer(logger=False, accelerator="cpu", devices=1)
    good = torch.randn(2, 1, 2, 2), torch.zeros(2, dtype=torch.long)
    bad = torch.full((2, 1, 2, 2), float("nan")), torch.zeros(2, dtype=torch.long)
    m.training_step(good, 0)
    m.training_step(bad, 1)  # no host sync yet: the window is checked every 3 steps
    with pytest.raises(FloatingPointError, match="epoch 0, global step 0"):
        m.training_step(good, 2)
    m.window.clear()
    m.training_step(bad, 3)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        m.on_save_checkpoint({})  # a checkpoint never holds what a bad loss left


def test_weight_decay_spares_the_named_parameter_kinds() -> None:
    from classicnets.models import get_model
    from classicnets.training.module import parameter_groups

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
    with pytest.raises(ValueError, match="bn is not a kind; name some of bias, norm, depthwise"):
        parameter_groups(net, ["bn"])


def test_updates_per_step_gives_the_weights_of_one_lightning_step_per_update(
    tmp_path: Path, train_main
) -> None:
    # LeNet-5's recipe: 4 per-pattern SDLM updates per training batch, against 1, over two passes
    # (the pass-wise rate table steps between them): the same patterns, updates and weights.
    def fit(updates: int, batches: int) -> dict:
        run_dir = tmp_path / f"updates{updates}"
        overrides = [
            *TINY,
            "logger=none",
            "test=false",
            "trainer.max_epochs=2",
            f"trainer.limit_train_batches={batches}",
            f"model.updates_per_step={updates}",
            "callbacks.sdlm_curvature.samples=20",
            "model.scheduler.table=[[1,5e-4],[2,2e-4]]",
        ]
        train_main(compose_config("train", overrides, run_dir))
        return load_file(run_dir / "checkpoints" / "last.ckpt")

    grouped, single = fit(4, 3), fit(1, 12)
    assert grouped["global_step"] == single["global_step"] == 24  # updates, not batches
    for key, value in single["state_dict"].items():
        assert torch.allclose(grouped["state_dict"][key], value, atol=1e-6), key
    lrs = [s["_last_lr"] for s in grouped["lr_schedulers"]]
    assert lrs == [[pytest.approx(2e-4)]]  # the second pass's rate


def test_updates_per_step_runs_a_callbacks_optimizer_step_hook_for_every_update(
    tmp_path: Path, train_main
) -> None:
    """The no-op hooks are skipped for speed; one that does something runs before every update."""
    from run_helpers import CountOptimizerSteps

    CountOptimizerSteps.calls = 0
    overrides = [
        *TINY,
        "logger=none",
        "test=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "model.updates_per_step=4",
        "callbacks.sdlm_curvature.samples=20",
        "+callbacks.count._target_=run_helpers.CountOptimizerSteps",
    ]
    train_main(compose_config("train", overrides, tmp_path))
    assert CountOptimizerSteps.calls == 12  # 3 batches of 4 updates


def test_updates_per_step_refuses_a_loss_scaler_in_one_line() -> None:
    """fp16 mixed precision (a GPU's "16-mixed") scales the loss, which the updates of a batch
    do not: refused at setup, naming the key, instead of unscaled steps."""
    from classicnets.run.checks import ConfigValueError

    m = per_pattern_module(updates_per_step=4)
    m.trainer = Trainer(logger=False, accelerator="cpu", devices=1, precision="bf16-mixed")
    m.setup("fit")  # bf16 has no scaler: allowed
    m.trainer.precision_plugin.scaler = torch.amp.GradScaler("cpu")
    with pytest.raises(ConfigValueError, match=r"^trainer\.precision=.*updates_per_step > 1"):
        m.setup("fit")


def test_the_recipes_with_several_updates_per_step_select_the_per_pattern_module(
    tmp_path: Path,
) -> None:
    from run_helpers import CONF_DIR

    per_pattern = []
    for recipe in sorted(p.stem for p in CONF_DIR.glob("model/*.yaml")):
        cfg = compose_config("train", [f"model={recipe}"], tmp_path)
        target = cfg.model._target_.rsplit(".", 1)[-1]
        if cfg.model.get("updates_per_step", 1) > 1:
            per_pattern.append(recipe)
            assert target == "PerPatternModule", recipe
        else:
            assert target == "ClassificationModule", recipe
    assert per_pattern == ["lenet5", "lenet5_modern"]


def test_a_per_pattern_checkpoint_and_an_older_one_evaluate_with_the_general_module(
    tmp_path: Path, train_main, eval_main
) -> None:
    """How the run stepped is the run config's, not the network's: evaluation rebuilds the
    general module. Older checkpoints name the general module with ``updates_per_step``."""
    from classicnets.run.checkpoints import CONFIG_KEY

    run_dir = tmp_path / "run"
    overrides = [
        *TINY,
        "logger=none",
        "test=false",
        "trainer.max_epochs=1",
        "callbacks.sdlm_curvature.samples=20",
    ]
    train_main(compose_config("train", overrides, run_dir))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert "updates_per_step" not in checkpoint["hyper_parameters"]
    assert checkpoint[CONFIG_KEY]["model"]["updates_per_step"] == 32
    older = dict(
        checkpoint, hyper_parameters={**checkpoint["hyper_parameters"], "updates_per_step": 32}
    )
    older[CONFIG_KEY]["model"]["_target_"] = "classicnets.training.module.ClassificationModule"
    torch.save(older, tmp_path / "older.ckpt")
    scores = []
    for path in (run_dir / "checkpoints" / "last.ckpt", tmp_path / "older.ckpt"):
        metrics = eval_main(
            compose_config("eval", [f"ckpt_path={path}", *TINY[:4]], tmp_path / path.stem)
        )
        scores.append(metrics["test/acc_top1"])
    assert scores[0] == scores[1] and 0 <= scores[0] <= 1
