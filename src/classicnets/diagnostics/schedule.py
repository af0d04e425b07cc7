"""The learning rate a recipe will use at every epoch, found by stepping the optimizer and the
schedulers that training builds (``classicnets.optim.build.build_optimization``, from the recipe
and the run's size), without a fit.

Lightning's order is kept: per-step schedulers (the warm-up) step after every optimizer step,
per-epoch ones after every epoch, each every ``frequency`` of its interval. A plateau scheduler
steps on a validation metric, which only a real run has: it is reported as its rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from lightning import LightningModule
from omegaconf import DictConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from classicnets.optim.build import RunSize, build_optimization

# ILSVRC-2012's training set (Russakovsky et al. 2015, Table 2): one ImageNet epoch.
ILSVRC2012_TRAIN_IMAGES = 1_281_167
ILSVRC2012_CLASSES = 1000


@dataclass(frozen=True)
class EpochSize:
    """One epoch of the run: its images, batches, and where the count came from."""

    images: int
    batches: int
    source: str


@dataclass(frozen=True)
class PlannedRun:
    """The run ``cfg.trainer`` describes, counted before any data is loaded, on one process (the
    global batch is what counts)."""

    steps_per_epoch: int  # Lightning steps (batches, or groups of accumulate_grad_batches)
    size: RunSize  # what the optimizer and its schedule are built for
    accumulate_grad_batches: int = 1
    max_steps: int = -1

    @property
    def max_epochs(self) -> int:
        return self.size.epochs


@dataclass
class Schedule:
    """The LR of parameter group 0 at the first and the last step of every epoch, per step when
    a per-step scheduler runs (for the plot), and the plateau rule if there is one."""

    first: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epoch, lr) points
    schedulers: list[str] = field(default_factory=list)
    plateau: ReduceLROnPlateau | None = None
    plateau_monitor: str | None = None
    groups_differ: bool = False


def count_epoch(cfg: DictConfig) -> tuple[EpochSize, Any]:
    """The training images of one epoch and the DataModule: its train split when the data is
    there, else (an ImageNet tree not built yet) ILSVRC-2012's training set."""
    datamodule = hydra.utils.instantiate(cfg.data)
    batch_size = int(cfg.data.batch_size)
    folders = type(datamodule).__name__ == "ImageNetDataModule"  # an ImageFolder tree
    train = Path(str(cfg.data.get("root"))).expanduser() / cfg.data.get("train_split", "train")
    if folders and not train.is_dir():
        images = ILSVRC2012_TRAIN_IMAGES
        source = f"ILSVRC-2012's {images:,} training images (no tree at data.root={cfg.data.root})"
        return EpochSize(images, images // batch_size, source), datamodule  # drop_last
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    images = len(loader.dataset)
    where = f" under {train}" if folders else ""
    source = f"{images:,} training images counted{where} ({type(datamodule).__name__})"
    return EpochSize(images, len(loader), source), datamodule


def planned_run(cfg: DictConfig, epoch: EpochSize) -> PlannedRun:
    """The run ``cfg.trainer`` describes: as many Lightning steps as the Trainer will take
    (``limit_train_batches``, ``accumulate_grad_batches``, ``max_steps``)."""
    trainer = cfg.trainer
    batches = epoch.batches
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, float) and limit < 1.0:
        batches = int(batches * limit)
    elif isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    max_steps = int(trainer.get("max_steps") or -1)
    epochs = int(trainer.max_epochs)
    per_epoch = math.ceil(batches / accumulate)  # Lightning steps on an epoch's last partial group
    steps = per_epoch * max(epochs, 1)
    size = RunSize(
        steps=min(steps, max_steps) if max_steps != -1 else steps,
        epochs=epochs,
        global_batch=int(cfg.data.batch_size),
        updates_per_step=int(cfg.model.get("updates_per_step") or 1),
    )
    return PlannedRun(per_epoch, size, accumulate, max_steps)


def build_module(cfg: DictConfig, datamodule: Any) -> LightningModule:
    """The recipe's LightningModule, on the meta device where the network allows it (no memory,
    no init: the schedule does not depend on the weights)."""
    try:
        num_classes = datamodule.num_classes
    except FileNotFoundError:  # an ImageNet tree not built yet
        num_classes = ILSVRC2012_CLASSES
    kwargs = {"num_classes": num_classes, "in_channels": datamodule.in_channels}
    try:
        with torch.device("meta"):
            module = hydra.utils.instantiate(cfg.model, **kwargs, _convert_="all")
    except (NotImplementedError, RuntimeError):
        module = hydra.utils.instantiate(cfg.model, **kwargs, _convert_="all")
    return module


def _lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def trace_schedule(module: LightningModule, run: PlannedRun) -> Schedule:
    """Step the optimizer and schedulers built for the module's recipe through the planned run."""
    optimizer, configs = build_optimization(
        module.optimizer_recipe(), module.optimizer_parameters(), run.size
    )
    schedule = Schedule()
    per_step, per_epoch = [], []
    for entry in configs:
        entry = {"interval": "epoch", "frequency": 1, **entry}  # Lightning's defaults
        scheduler, interval = entry["scheduler"], entry["interval"]
        schedule.schedulers.append(f"{type(scheduler).__name__} (per {interval})")
        if isinstance(scheduler, ReduceLROnPlateau):
            schedule.plateau, schedule.plateau_monitor = scheduler, entry.get("monitor")
        elif interval == "step":
            per_step.append(entry)
        else:
            per_epoch.append(entry)
    # No gradients: this step changes no weight. torch wants one before any scheduler step.
    optimizer.step()
    # A module that takes several optimizer updates per Lightning step steps its per-step
    # schedulers after every update (model.updates_per_step); their length counts updates too.
    steps = run.steps_per_epoch * run.size.updates_per_step
    global_step = 0  # optimizer updates, as trainer.global_step counts them
    for epoch in range(run.max_epochs):
        schedule.first.append(_lr(optimizer))
        schedule.groups_differ |= len({g["lr"] for g in optimizer.param_groups}) > 1
        if per_step:
            for batch_idx in range(steps):
                if global_step == run.max_steps:
                    break
                schedule.curve.append((epoch + batch_idx / steps, _lr(optimizer)))
                global_step += 1
                for entry in per_step:
                    if (batch_idx + 1) % entry["frequency"] == 0:
                        entry["scheduler"].step()
            schedule.last.append(schedule.curve[-1][1])
        else:
            global_step += steps
            schedule.curve.append((epoch, _lr(optimizer)))
            schedule.last.append(_lr(optimizer))
        for entry in per_epoch:
            if (epoch + 1) % entry["frequency"] == 0:
                entry["scheduler"].step()
        if run.max_steps != -1 and global_step >= run.max_steps:
            break
    schedule.curve.append((len(schedule.first), schedule.last[-1]))  # the end of the last epoch
    return schedule


def plateau_cap(scheduler: ReduceLROnPlateau) -> int | None:
    """The most reductions the plateau scheduler makes, when it says (torch's makes no limit)."""
    for attribute in ("max_reductions", "max_decays"):
        if hasattr(scheduler, attribute):
            return int(getattr(scheduler, attribute))
    return None


def plateau_rule(scheduler: ReduceLROnPlateau, monitor: str | None) -> str:
    """A plateau scheduler as the rule it follows (its curve depends on the validation metric)."""
    metric = monitor or "the monitored metric"
    moves = "risen" if scheduler.mode == "max" else "fallen"
    by = f"{scheduler.threshold:g}" + (" relative" if scheduler.threshold_mode == "rel" else "")
    rule = f"lr ×{scheduler.factor:g} when {metric} has not {moves} by {by}"
    rule += f" for {scheduler.patience} epochs"
    if scheduler.cooldown:
        rule += f", then {scheduler.cooldown} epochs of cooldown"
    cap = plateau_cap(scheduler)
    rule += f"; at most {cap} reductions" if cap is not None else "; no limit on reductions"
    floor = min(scheduler.min_lrs)
    if floor > 0:
        rule += f"; never below {floor:g}"
    return rule
