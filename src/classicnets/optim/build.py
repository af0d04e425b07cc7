"""A run's optimizer and learning-rate schedule, built from its recipe and its size.

One pure function, :func:`build_optimization`, called by training
(``ClassificationModule.configure_optimizers``) and by ``scripts/lr_schedule.py`` alike: the
schedule a user reads before a run is the one the run steps through.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR

from classicnets.run.checks import ConfigValueError

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., Any]


@dataclass(frozen=True)
class RunSize:
    """How long a run is, in what its schedule depends on.

    Args:
        steps: Lightning's steps in the whole run (``Trainer.estimated_stepping_batches``).
        epochs: ``trainer.max_epochs``.
        global_batch: patterns per optimizer update over all ranks (``data.batch_size``).
        updates_per_step: optimizer updates per Lightning step (1 but for the per-pattern module).
    """

    steps: int
    epochs: int
    global_batch: int | None = None
    updates_per_step: int = 1

    @property
    def updates(self) -> int:
        """Optimizer updates in the whole run: what step-wise schedules count."""
        return self.steps * self.updates_per_step


@dataclass(frozen=True)
class OptimizerRecipe:
    """What a recipe (``conf/model``) says about optimisation.

    Args:
        optimizer: a partial optimizer (``_partial_: true``), called with the parameters.
        scheduler: a partial LR scheduler called with the optimizer, or None; one that takes
            ``total_steps`` gets the run's optimizer updates (the schedule keeps its shape at any
            batch size and length).
        scheduler_config: Lightning's scheduler settings (interval, frequency, monitor).
        reference_batch_size: the paper's global batch; None disables LR scaling.
        scale_lr: apply the linear scaling rule when the run's batch is not the paper's.
        warmup_epochs: gradual warm-up length when the scaled LR is larger than the paper's.
    """

    optimizer: OptimizerFactory
    scheduler: SchedulerFactory | None = None
    scheduler_config: Mapping[str, Any] = field(default_factory=dict)
    reference_batch_size: int | None = None
    scale_lr: bool = True
    warmup_epochs: float = 5.0


def scaled_learning_rate(base_lr: float, batch_size: int, reference_batch_size: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): the LR grows with the global batch."""
    return base_lr * batch_size / reference_batch_size


def build_optimization(
    recipe: OptimizerRecipe, params: Iterable[Any], run: RunSize
) -> tuple[Optimizer, list[dict[str, Any]]]:
    """The optimizer over ``params`` and Lightning's scheduler configs (an empty list without a
    schedule): the recipe's schedule, then, for a batch larger than the paper's, the warm-up."""
    optimizer = recipe.optimizer(params=params)
    ratio = _lr_ratio(recipe, run.global_batch)
    if ratio != 1.0:
        _scale_learning_rates(optimizer, run.global_batch, recipe.reference_batch_size)
    schedulers: list[dict[str, Any]] = []
    if recipe.scheduler is not None:
        settings = dict(recipe.scheduler_config)
        if settings.get("monitor") is None:
            settings.pop("monitor", None)
        kwargs = {}
        if "total_steps" in inspect.signature(recipe.scheduler).parameters:
            kwargs["total_steps"] = run.updates
        schedulers.append({"scheduler": recipe.scheduler(optimizer, **kwargs), **settings})
    if ratio > 1 and recipe.warmup_epochs and run.epochs:
        # Goyal et al. 2017, section 2.2: from the paper's rate η (factor 1/k of the scaled kη),
        # "increment it by a constant amount at each iteration" for warmup_epochs. Built after
        # the recipe's scheduler: both scale the LR multiplicatively, so they chain.
        fraction = min(1.0, recipe.warmup_epochs / run.epochs)
        steps = max(1, int(run.updates * fraction))
        warmup = LinearLR(optimizer, 1.0 / ratio, 1.0, steps)
        schedulers.append({"scheduler": warmup, "interval": "step"})
    return optimizer, schedulers


def _lr_ratio(recipe: OptimizerRecipe, batch: int | None) -> float:
    """This run's batch over the paper's where the linear scaling rule applies, else 1."""
    reference = recipe.reference_batch_size
    if not reference or not batch or batch == reference:
        return 1.0
    if not recipe.scale_lr:
        log.info(
            "global batch %d differs from the paper's %d; LR scaling is off (model.scale_lr)",
            batch,
            reference,
        )
        return 1.0
    ratio = batch / reference
    warmup = ratio > 1 and recipe.warmup_epochs
    log.info(
        "linear LR scaling: global batch %d vs the paper's %d, LR x%.4g%s",
        batch,
        reference,
        ratio,
        f", warm-up from x{1 / ratio:.4g} over {recipe.warmup_epochs:g} epochs" if warmup else "",
    )
    return ratio


def _scale_learning_rates(optimizer: Optimizer, batch: int, reference: int) -> None:
    """Every parameter group's LR, and the optimizer's default, by the linear scaling rule: a
    group with its own rate (a multiplier of the base rate) keeps its ratio to the others."""
    if "lr" not in optimizer.defaults:
        raise ConfigValueError(
            "model.optimizer", type(optimizer).__name__, "LR scaling needs an optimizer with an lr"
        )
    optimizer.defaults["lr"] = scaled_learning_rate(optimizer.defaults["lr"], batch, reference)
    for group in optimizer.param_groups:
        group["lr"] = scaled_learning_rate(group["lr"], batch, reference)
