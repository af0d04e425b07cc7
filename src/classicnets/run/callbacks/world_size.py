"""Resuming on another number of processes: the epoch goes on with the images not yet seen.

A job requeued on a cluster may get fewer (or more) GPUs than it stopped on. The global batch
(``data.batch_size``) stays what it was; each process takes its share of it. The training
sampler keeps a global position in the epoch's permutation (:class:`~classicnets.data.sampling.
SeededSampler`), so the processes of the resumed run share exactly the images the stopped run had
not reached, each once. What Lightning counts in batches of this process is restated for the new
loader: the batches done in the epoch (so the epoch ends when its images are used up, not after
the stopped run's count), and the optimizer steps (``trainer.global_step``; one process with
``model.updates_per_step > 1`` counts them apart from DDP's steps). Schedules follow the steps and
epochs, so they go on where they were.

What cannot repeat: random draws of the network itself (dropout), which each process drew from
its own generator; with BatchNorm, the statistics of a per-process batch of another size. A
training loader without such a global position (litdata's shards keep theirs per process)
cannot continue an epoch on another number of processes: that is refused in one line.
"""

from __future__ import annotations

import math
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from classicnets.data.sampling import SeededSampler
from classicnets.run import compat
from classicnets.run.checks import ConfigValueError

WORLD_SIZE_KEY = "world_size"  # checkpoint key: the number of processes that trained it


class ResumeOnAnotherWorldSize(Callback):
    """Store the number of processes in checkpoints; on a resume with another number, continue
    the epoch where its data order stopped (or refuse where the loader cannot) and say so."""

    def __init__(self) -> None:
        self._saved: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[WORLD_SIZE_KEY] = trainer.world_size

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get(WORLD_SIZE_KEY) or len(checkpoint.get("rng_states") or [None])
        self._saved = {"world_size": saved, "global_step": checkpoint.get("global_step", 0)}
        if saved == trainer.world_size or not _mid_epoch(checkpoint):
            return
        loaders = checkpoint["loops"]["fit_loop"]["state_dict"].get("combined_loader", [])
        if not loaders or any(_global_position(state, saved) is None for state in loaders):
            raise ConfigValueError(
                "trainer.devices",
                trainer.num_devices,
                f"the checkpoint stopped in the middle of an epoch on {saved} processes, and this "
                "data's training loader continues an epoch only on as many; resume on "
                f"{saved} processes (trainer.devices x trainer.num_nodes), or from a checkpoint "
                "saved at the end of an epoch",
            )
        batch = checkpoint.get("hyper_parameters", {}).get("batch_size")
        if batch and pl_module.hparams.get("batch_size") not in (None, batch):
            raise ConfigValueError(
                "data.batch_size",
                pl_module.hparams.batch_size,
                f"the checkpoint's run took a global batch of {batch}; resume with "
                f"data.batch_size={batch}, the global batch on any number of processes",
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        _restore_global_step(trainer, saved["global_step"])
        if saved["world_size"] == trainer.world_size:
            return
        compat.restore_train_loader_position(trainer)  # the sampler holds the loaded position
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        epoch = trainer.current_epoch
        message = (
            f"resuming on {_count(trainer.world_size, 'process')} a run that stopped on "
            f"{saved['world_size']}: global step {trainer.global_step}"
        )
        if isinstance(sampler, SeededSampler) and trainer.fit_loop.restarting:
            batches_left = _batches_left(trainer.train_dataloader, sampler)
            _set_batches_done(trainer, max(0, trainer.num_training_batches - batches_left))
            size = len(sampler.dataset)  # type: ignore[arg-type]
            message += (
                f", epoch {epoch} goes on at image {min(sampler.position, size)} of {size} with "
                f"the {max(0, size - sampler.position)} not yet seen "
                f"({_count(batches_left, 'batch')} of this process)"
            )
        batch = pl_module.hparams.get("batch_size")
        if batch:
            message += f"; global batch {batch}, {batch // trainer.world_size} per process"
        rank_zero_info(message + "; dropout and other random draws of the network start anew")


def _mid_epoch(checkpoint: dict[str, Any]) -> bool:
    """Whether the checkpoint was saved inside an epoch's training (not at its end)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    batches = loop.get("epoch_loop.batch_progress", {})
    epochs = loop.get("epoch_progress", {}).get("current", {})
    return (
        bool(batches.get("current", {}).get("ready"))
        and not batches.get("is_last_batch", True)
        and epochs.get("ready", 0) > epochs.get("processed", 0)
    )


def _global_position(loader_state: Any, world_size: int) -> int | None:
    """The sampler's global position in a ``StatefulDataLoader`` state, if it keeps one. A
    :class:`SeededSampler` state that counts only this rank's images (``yielded``) gets its
    position, in place: every rank had yielded as many."""
    if not isinstance(loader_state, dict):
        return None
    sampler = (loader_state.get("_sampler_iter_state") or {}).get("sampler_state") or {}
    if "position" not in sampler and {"epoch", "yielded"} <= sampler.keys():
        sampler.update(position=sampler["yielded"] * world_size, world_size=world_size)
    return sampler.get("position")


def _batches_left(loader: Any, sampler: SeededSampler) -> int:
    """Batches this process's loader still yields in the epoch."""
    left = sampler.samples_left()
    per_batch = loader.batch_size
    return left // per_batch if loader.drop_last else math.ceil(left / per_batch)


def _set_batches_done(trainer: Trainer, done: int) -> None:
    """Restate the epoch's batches done (the stopped run counted its own, of another size), so
    the epoch ends with its last image; the progress counters keep their relations."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    shift = done - progress.current.ready
    for counts in (progress.current, progress.total):
        for name in ("ready", "started", "processed", "completed"):
            setattr(counts, name, getattr(counts, name) + shift)


def _restore_global_step(trainer: Trainer, global_step: int) -> None:
    """Lightning counts optimizer steps apart for automatic and manual optimisation; a module
    that switched (``model.updates_per_step`` applies to one process) goes on from the saved
    count."""
    if trainer.global_step == global_step:
        return
    loop = trainer.fit_loop.epoch_loop
    if trainer.lightning_module.automatic_optimization:
        optimizer = loop.automatic_optimization.optim_progress.optimizer
        for counts in (optimizer.step.total, optimizer.zero_grad.total):
            counts.ready = counts.completed = global_step
        optimizer.zero_grad.total.started = global_step
    else:
        steps = loop.manual_optimization.optim_step_progress.total
        steps.ready = steps.completed = global_step


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'es' if number != 1 else ''}"
