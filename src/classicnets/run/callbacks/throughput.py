"""Training throughput in the logs and the progress bar: images per second and the fraction of
step time spent waiting for data, so a data bottleneck shows at once."""

from __future__ import annotations

import time
from typing import Any

from lightning import Callback, LightningModule, Trainer
from torch import Tensor

from classicnets.run import checks


class Throughput(Callback):
    """Every ``every_n_steps`` training batches, log ``perf/images_per_s`` (global: this rank's
    images × the number of ranks) and ``perf/data_wait`` (the share of wall time between the end
    of one batch and the start of the next: fetching, collating and moving the batch).

    Host clocks only, never a device sync (Lightning's ``ThroughputMonitor`` synchronises CUDA
    after every batch): on an accelerator the queue of launched kernels fills within a few steps,
    after which host time per window is device time per window. The first window of each epoch
    starts at its first batch, so start-up and validation are not counted."""

    def __init__(self, every_n_steps: int = 50) -> None:
        checks.positive_int("callbacks.throughput.every_n_steps", every_n_steps)
        self.every_n_steps = every_n_steps
        self._window_start: float | None = None
        self._batch_end: float | None = None
        self._waiting = 0.0
        self._images = 0
        self._steps = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._window_start = self._batch_end = None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._window_start is None:
            self._window_start, self._waiting, self._images, self._steps = now, 0.0, 0, 0
        elif self._batch_end is not None:
            self._waiting += now - self._batch_end

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batch_end = now = time.perf_counter()
        if self._window_start is None:
            return
        self._images += _batch_size(batch)
        self._steps += 1
        if self._steps < self.every_n_steps:
            return
        elapsed = max(now - self._window_start, 1e-9)
        metrics = {
            "perf/images_per_s": self._images * trainer.world_size / elapsed,
            "perf/data_wait": self._waiting / elapsed,
        }
        # Into the bar through Lightning; into the loggers at once, since Lightning writes step
        # values only every log_every_n_steps, which these windows need not meet.
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        if trainer.is_global_zero:  # rank 0's clock speaks for all: no sync
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        self._window_start, self._waiting, self._images, self._steps = now, 0.0, 0, 0


def _batch_size(batch: Any) -> int:
    """Images in a batch: the first tensor's leading dimension."""
    if isinstance(batch, Tensor):
        return len(batch)
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 0
