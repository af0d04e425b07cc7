"""LeNet-5's per-pattern updates (LeCun et al. 1998, section III.A: the weights change after every
pattern) at a speed Lightning's loop does not give one pattern per step.

The DataModule loads ``updates_per_step`` update batches at once (``data.updates_per_step``
follows ``model.updates_per_step``); :class:`PerPatternModule` takes one optimizer update on each
slice of that training batch. Lightning's per-step work (hooks, progress, loop bookkeeping: ~1 ms,
more than a per-pattern LeNet-5 update on 2 cores) is then paid once per ``updates_per_step``
updates, and the weights are those of one Lightning step per update (tests/test_module.py).
The LeNet-5 recipes select it with ``model._target_`` (conf/model/lenet5.yaml).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from torch import Tensor

from classicnets.optim.build import RunSize
from classicnets.run import checks, compat
from classicnets.training.module import ClassificationModule

log = logging.getLogger(__name__)


class PerPatternModule(ClassificationModule):
    """A :class:`ClassificationModule` that takes ``updates_per_step`` optimizer updates per
    training batch, each on the next ``1 / updates_per_step`` of it, as Lightning would take one
    per step: step-wise schedules step after every update and count updates, epoch-wise ones step
    at epoch ends, gradients are clipped as the Trainer says, and every callback's
    ``on_before_optimizer_step`` that does something runs before every update.

    Args:
        updates_per_step: optimizer updates per training batch (1: Lightning's own stepping).
        **kwargs: those of :class:`ClassificationModule`.
    """

    # How the run steps, not what the network is: a checkpoint's hyperparameters rebuild a
    # ClassificationModule for evaluation (the run config keeps model.updates_per_step).
    not_hyperparameters = (*ClassificationModule.not_hyperparameters, "updates_per_step")

    def __init__(self, updates_per_step: int = 1, **kwargs: Any) -> None:
        checks.positive_int("model.updates_per_step", updates_per_step)
        super().__init__(**kwargs)
        self.updates_per_step = updates_per_step
        self.automatic_optimization = updates_per_step == 1

    def setup(self, stage: str) -> None:
        # Several updates per batch need one process: under DDP every update is a Lightning
        # step of its own (DDP all-reduces once per forward), and the DataModule loads so.
        if self.updates_per_step > 1 and self.trainer.world_size > 1:
            log.info("model.updates_per_step applies to one process; under DDP it is 1")
            self.updates_per_step = 1
            self.automatic_optimization = True
        # fp16 mixed precision scales the loss; the updates of a batch step without the scaler
        if self.updates_per_step > 1 and getattr(self.trainer.precision_plugin, "scaler", None):
            raise checks.ConfigValueError(
                "trainer.precision",
                self.trainer.precision,
                "model.updates_per_step > 1 steps without a loss scaler: use bf16-mixed or "
                "32-true, or model.updates_per_step=1",
            )

    def run_size(self) -> RunSize:
        """Step-wise schedules count updates: ``updates_per_step`` per Lightning step."""
        return dataclasses.replace(super().run_size(), updates_per_step=self.updates_per_step)

    def configure_optimizers(self) -> tuple[list[Any], list[dict[str, Any]]]:
        monitor = (self.hparams.scheduler_config or {}).get("monitor")
        if self.scheduler_factory is not None and monitor and not self.automatic_optimization:
            # this module steps epoch-wise schedules itself, without the validation metric
            raise ValueError("a monitored scheduler needs model.updates_per_step=1")
        return super().configure_optimizers()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch
        if self.automatic_optimization:
            return self.forward_loss(images, targets)
        optimizer = self.optimizers()
        hooks = compat.before_step_hooks(self.trainer, optimizer)
        per_update = [
            c.scheduler for c in self.trainer.lr_scheduler_configs if c.interval == "step"
        ]
        clip = self.trainer.gradient_clip_val
        # Slices of the update batch (one process: the global batch), the epoch's last shorter.
        size = self.hparams.batch_size or math.ceil(len(targets) / self.updates_per_step)
        for slice_images, slice_targets in zip(
            images.split(size), targets.split(size), strict=True
        ):
            loss = self.forward_loss(slice_images, slice_targets)
            optimizer.zero_grad(set_to_none=True)
            # Not manual_backward: its two callback rounds (on_before/after_backward) cost a
            # tenth of a LeNet-5 update. One process (see setup), no loss scaling (fp32, bf16).
            loss.backward()
            if clip:
                self.clip_gradients(optimizer, clip, self.trainer.gradient_clip_algorithm)
            compat.counted_step(optimizer, hooks)  # optimizer.step() without the no-op hooks
            for scheduler in per_update:
                scheduler.step()
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if not self.automatic_optimization:  # what Lightning does for epoch-wise schedules
            for config in self.trainer.lr_scheduler_configs:
                if config.interval == "epoch" and (self.current_epoch + 1) % config.frequency == 0:
                    config.scheduler.step()
