"""A sweep that fills one node: Hydra's submitit local launcher, with the node's GPUs shared out.

Hydra's ``submitit_local`` launcher submits every job of a sweep at once and gives each the same
GPUs (``CUDA_VISIBLE_DEVICES=0..gpus_per_node-1``). :class:`NodeLauncher` cuts the node's GPUs
into slots of ``gpus_per_job`` and runs one job per slot at a time, each seeing only its own
devices; a job starts as soon as a slot is free. Each job is the same submitit job as before (one
process per device, one directory per job), so DDP inside a job works as with ``launcher=local``.
Without GPUs, ``max_parallel`` jobs run side by side (default one, as Hydra's basic launcher).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher

log = logging.getLogger(__name__)

# Parameters of submitit's LocalExecutor that the job config may set (the others are SLURM's).
EXECUTOR_KEYS = ("timeout_min", "tasks_per_node", "nodes", "signal_delay_s", "stderr_to_stdout")


def visible_gpus() -> list[int]:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES`` is honoured by the count)."""
    import torch

    return list(range(torch.cuda.device_count()))


def gpu_slots(
    gpus: Sequence[int], gpus_per_job: int, max_parallel: int | None = None
) -> list[tuple[int, ...]]:
    """Disjoint groups of ``gpus_per_job`` GPUs, one per job running at once; without GPUs (or
    with ``gpus_per_job=0``) ``max_parallel`` empty groups, one by default."""
    if gpus_per_job < 0:
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job} must be 0 or more")
    if gpus_per_job and len(gpus) < gpus_per_job and gpus:
        raise ValueError(
            f"hydra.launcher.gpus_per_job={gpus_per_job} but this node has {len(gpus)} GPUs "
            f"({list(gpus)}): lower trainer.devices or hydra.launcher.gpus_per_job"
        )
    if gpus_per_job and gpus:
        count = len(gpus) // gpus_per_job
        slots = [tuple(gpus[i * gpus_per_job : (i + 1) * gpus_per_job]) for i in range(count)]
    else:
        slots = [()] * (max_parallel or 1)
    return slots[:max_parallel] if max_parallel else slots


class NodeLauncher(LocalLauncher):
    """``hydra/launcher: node`` (conf/hydra/launcher/node.yaml), selected by ``launcher=local``:
    Hydra's ``submitit_local`` launcher with its own ``launch``."""

    def __init__(
        self,
        *,
        gpus_per_job: int = 0,
        max_parallel: int | None = None,
        gpus: Sequence[int] | None = None,
        poll_s: float = 0.5,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.gpus_per_job, self.max_parallel = int(gpus_per_job), max_parallel
        self.gpus = list(gpus) if gpus is not None else None
        self.poll_s = poll_s

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        gpus = self.gpus if self.gpus is not None else visible_gpus()
        slots = gpu_slots(gpus, self.gpus_per_job, self.max_parallel)
        executor = submitit.LocalExecutor(folder=self.params["submitit_folder"])
        executor.update_parameters(**{k: self.params[k] for k in EXECUTOR_KEYS if k in self.params})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "Submitit local sweep in %s: %d jobs, %d at once%s",
            sweep_dir,
            len(job_overrides),
            len(slots),
            f", {self.gpus_per_job} GPU(s) each" if slots[0] else "",
        )

        pending = list(enumerate(job_overrides))
        running: dict[int, tuple[int, submitit.Job]] = {}  # slot -> (job position, job)
        results: list[JobReturn | None] = [None] * len(job_overrides)
        while pending or running:
            for slot, (position, job) in list(running.items()):
                if job.done():
                    results[position] = job.results()[0]
                    del running[slot]
            for slot in (s for s in range(len(slots)) if s not in running):
                if not pending:
                    break
                position, overrides = pending.pop(0)
                num = initial_job_idx + position
                executor.update_parameters(gpus_per_node=len(slots[slot]), visible_gpus=slots[slot])
                job = executor.submit(
                    self,
                    list(overrides),
                    "hydra.sweep.dir",
                    num,
                    f"job_id_for_{num}",
                    Singleton.get_state(),
                )
                log.info(
                    "\t#%d (GPUs %s): %s",
                    num,
                    list(slots[slot]) or "none",
                    " ".join(filter_overrides(overrides)),
                )
                running[slot] = (position, job)
            time.sleep(self.poll_s)
        return [r for r in results if r is not None]
