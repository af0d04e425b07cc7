"""Callbacks that make an interrupted run resume as if it had never stopped."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from classicnets.run import checks, compat
from classicnets.run.launch import stop_child_watch
from classicnets.run.resume import LAST

RNG_KEY = "rng_states"  # checkpoint key: one entry per rank


def rng_state() -> dict[str, Any]:
    """This process's random number generators (Python, NumPy, torch CPU and CUDA), as tensors and
    plain numbers so that ``torch.load(weights_only=True)`` reads them."""
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": [version, torch.tensor(mt_state, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateCheckpoint(Callback):
    """Store every rank's RNG states in checkpoints and restore them on resume, so the resumed run
    draws the same augmentations and dropout masks as a run never interrupted (Lightning keeps
    model, optimizer, schedulers, loops and callbacks, but not the generators)."""

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states: list[Any] = [rng_state()]
        if _distributed(trainer):
            # every rank is here: Trainer.save_checkpoint runs on all of them and ends in a barrier
            states = [None] * trainer.world_size
            dist.all_gather_object(states, rng_state())
        checkpoint[RNG_KEY] = states

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get(RNG_KEY)
        if not states:
            return
        if len(states) != trainer.world_size:
            rank_zero_warn(
                f"the checkpoint holds RNG states of {len(states)} processes, this run has "
                f"{trainer.world_size}: the network's random draws (dropout) will not repeat those "
                "of the first run (the data order and augmentations do)"
            )
        set_rng_state(states[trainer.global_rank % len(states)])


class LoaderPosition(Callback):
    """A run resumed mid-epoch goes on with the next batch of the train loader, also where
    Lightning built the loader before it loaded the checkpoint (:mod:`classicnets.run.compat`)."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        compat.restore_train_loader_position(trainer)


class CheckpointOnSignal(Callback):
    """Stop training on SIGTERM or SIGUSR1 with ``last.ckpt`` saved, so ``ckpt_path: auto``
    resumes from there; on SLURM with auto-requeue, SIGUSR1 also requeues the job.

    SIGUSR1 is what SLURM sends before preemption or the time limit (``--signal=USR1@120``,
    conf/launcher/slurm.yaml). Lightning's own handlers save checkpoints and broadcast from
    inside the signal handler, at whatever point each rank happens to be; under DDP that met other
    collectives and hung. Here the handler only records the signal. One process looks at the
    record after every training batch (a set lookup); several agree (one all-reduce) every
    ``check_every_n_steps`` batches and at every epoch end whether any of them got one, so no step
    waits on a collective and a signal stops them within that many steps. Then all of them save,
    the job is requeued (rank 0, ``scontrol requeue``, as Lightning does) and training ends with
    ``SIGTERMException``, exit status 128 + signal.
    The checkpoint holds the training loader's position (classicnets.data.sampling), so the
    resumed run goes on with the next batch.
    """

    def __init__(self, check_every_n_steps: int = 100) -> None:
        checks.positive_int(
            "callbacks.checkpoint_on_signal.check_every_n_steps", check_every_n_steps
        )
        self.check_every_n_steps = check_every_n_steps
        self._received: set[int] = set()
        self._previous: dict[int, Any] = {}
        self._requeue_signal: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        env = compat.cluster_environment(trainer)
        requeue = isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal
        self._requeue_signal = int(requeue) if requeue else None
        self._received.clear()
        # After Lightning registered its handlers, which these replace until training ends.
        for signum in {int(signal.SIGTERM), int(requeue or signal.SIGUSR1)}:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._received.add(signum)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # After the epoch's last batch, stop after its validation instead (on_train_epoch_end):
        # Lightning resumes a checkpoint of this moment with the finished epoch's data iterator.
        if batch_idx + 1 >= trainer.num_training_batches:
            return
        if _distributed(trainer) and (batch_idx + 1) % self.check_every_n_steps:
            return
        self._stop_if_signalled(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_signalled(trainer)

    def _stop_if_signalled(self, trainer: Trainer) -> None:
        if _distributed(trainer):
            signum, requeue = self._agree(trainer)
        elif self._received:
            signum, requeue = max(self._received), self._requeue_signal in self._received
        else:
            return
        if signum:
            self._stop(trainer, signum, requeue)

    def _stop(self, trainer: Trainer, signum: int, requeue: bool) -> None:
        path = self._save_last(trainer)
        rank_zero_info(
            f"stopped by signal {signum} at epoch {trainer.current_epoch}, global step "
            f"{trainer.global_step}; saved {path}"
        )
        if requeue and trainer.is_global_zero:
            requeue_slurm_job()
        stop_child_watch()  # the children exit as this process does, not killed by Lightning
        raise SIGTERMException(128 + signum)

    def _agree(self, trainer: Trainer) -> tuple[int, bool]:
        """(the highest signal any rank received, 0 for none; whether it asks for a requeue)."""
        flags = torch.tensor(
            [max(self._received, default=0), self._requeue_signal in self._received],
            dtype=torch.int32,
            device=trainer.strategy.root_device,
        )
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)  # a signal on any rank stops them all
        return int(flags[0]), bool(flags[1])

    @staticmethod
    def _save_last(trainer: Trainer) -> Path:
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            path = Path(callback.dirpath) / LAST
        else:
            path = Path(trainer.default_root_dir) / "checkpoints" / LAST
        trainer.save_checkpoint(path)
        return path

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


def _distributed(trainer: Trainer) -> bool:
    return trainer.world_size > 1 and dist.is_available() and dist.is_initialized()


def requeue_slurm_job() -> None:
    """Put this SLURM job back in the queue (what Lightning's auto-requeue runs)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = (
        f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        if array_job
        else os.environ["SLURM_JOB_ID"]
    )
    result = subprocess.call(["scontrol", "requeue", job])
    if result:
        rank_zero_warn(f"scontrol requeue {job} failed with exit code {result}")
    else:
        rank_zero_info(f"requeued SLURM job {job}")
