"""Batch-norm statistics recomputed with the final weights, over training batches.

During training, BN's running mean and variance are an exponential average over batches seen
with weights that kept changing; averaged weights (GoogLeNet's Polyak average) never saw any
batch at all. ShuffleNet's official code (megvii-model/ShuffleNet-Series, ``train.py``,
``bn_process=True``) therefore runs one more pass over the training data after the last step,
with the learning rate at 0 and BN's momentum at 1/iteration (a plain mean), before its final
test. This is that pass, with :func:`torch.optim.swa_utils.update_bn` doing the averaging.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from itertools import chain, islice

import torch
from lightning import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

log = logging.getLogger(__name__)


# torch's batch norms, by their public names (their base class, _BatchNorm, is private).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batch_norms(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, BATCH_NORMS)]


def recompute_bn_statistics(net: nn.Module, inputs: Iterable[Tensor]) -> int:
    """Replace every BN layer's running mean and variance in ``net`` by their plain mean over
    ``inputs`` (forwarded in training mode, without gradients); returns how many batches were
    used. Weights and every other buffer, ``num_batches_tracked`` included, are left as they
    were, and so is ``net``'s training mode."""
    norms = batch_norms(net)
    batches = iter(inputs)
    first = next(batches, None)
    if first is None:
        raise ValueError("no training batches to recompute the BN statistics from")
    counters = [m.num_batches_tracked for m in norms if m.num_batches_tracked is not None]
    tracked = [c.clone() for c in counters]
    used = 0

    def counted() -> Iterator[Tensor]:
        nonlocal used
        for batch in chain([first], batches):
            used += 1
            yield batch

    update_bn(counted(), net)
    with torch.no_grad():
        for counter, count in zip(counters, tracked, strict=True):
            counter.copy_(count)  # a counter for resuming, not a statistic
    return used


class RecomputeBatchNorm(Callback):
    """When training ends, recompute the BN statistics of the final network (the Polyak average
    where the run keeps one) over ``num_batches`` training batches, through the run's own
    loader and device transfer (so with its augmentation), and rewrite the final checkpoint
    (``last.ckpt``) so that it holds them.

    Args:
        num_batches: training batches to average over; ``None`` for one whole pass over the
            training data (ShuffleNet's official code: 1,280,000 / batch size iterations);
            0 switches the step off. Never more than one of the run's epochs, so a run with
            ``trainer.limit_train_batches`` or ``fast_dev_run`` recomputes over as many batches.
    """

    def __init__(self, num_batches: int | None = 0) -> None:
        if num_batches is not None and num_batches < 0:
            raise ValueError(f"num_batches must be >= 0 or null (one pass), not {num_batches}")
        self.num_batches = num_batches

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.num_batches == 0 or trainer.datamodule is None:
            return
        # Averaged weights: recompute on the average, which the averaging callback copies into
        # the network (whichever of the two callbacks runs first) and writes to checkpoints.
        averages = [
            cb.average_module() for cb in trainer.callbacks if hasattr(cb, "average_module")
        ]
        target = next((m for m in averages if m is not None), pl_module)
        net = target.net
        if not batch_norms(net):
            log.info("RecomputeBatchNorm: %s has no batch normalisation", type(net).__name__)
            return
        device = next(net.parameters()).device
        epoch = trainer.num_training_batches  # the run's epoch, its limits included
        count = epoch if self.num_batches is None else min(self.num_batches, epoch)
        batches = islice(trainer.datamodule.train_dataloader(), int(min(count, sys.maxsize)))

        def inputs() -> Iterator[Tensor]:
            for batch in batches:
                images, _ = trainer.strategy.batch_to_device(batch)
                yield images.to(device)

        with trainer.strategy.precision_plugin.forward_context():
            used = recompute_bn_statistics(net, inputs())
        for norm in batch_norms(net):  # every process the same statistics (their mean)
            for stat in (norm.running_mean, norm.running_var):
                stat.copy_(trainer.strategy.reduce(stat, reduce_op="mean"))
        if target is not pl_module:
            current = dict(pl_module.named_buffers())
            for name, buffer in target.named_buffers():
                current[name].copy_(buffer)
        log.info("BN statistics recomputed over %d training batches", used)
        self._rewrite_final_checkpoint(trainer)

    @staticmethod
    def _rewrite_final_checkpoint(trainer: Trainer) -> None:
        from classicnets.run.checkpoints import final_checkpoint

        path = final_checkpoint(trainer)
        if path:
            trainer.save_checkpoint(path)
