"""Processes of a run: DDP under Hydra, sweeps of DDP jobs, and processes that a launcher starts.

Lightning's plain ``ddp`` starts the other ranks by running the script again. Under Hydra it
repeats the parent's command line, ``-m`` included, so inside a sweep every child starts a sweep
of its own (the known Lightning + Hydra problem that makes lightning-hydra-template fall back to
``ddp_spawn``). Here the children instead rerun *this job*: its own overrides, in RUN mode, in the
job's directory, writing no ``.hydra/`` of their own and logging to the job's one log file.
After the job, :func:`end_job` closes the process group, waits for the children and restores the
environment, so the next job of a sweep starts its own processes.

Processes that a launcher starts itself (SLURM through ``srun``, submitit's local executor) are
one per device; Lightning then starts nothing (``SLURMEnvironment``, :class:`SubmititEnvironment`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd, to_absolute_path
from lightning import Trainer
from lightning.fabric.plugins.environments import ClusterEnvironment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from classicnets.run import compat
from classicnets.run.resume import CHECKPOINTS, LAST

log = logging.getLogger(__name__)

# What Lightning's launcher puts into the parent's environment for its children; left there, the
# next job of a sweep would think its processes were started externally and wait for them forever.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Hydra overrides that concern the sweep, not the job: a child runs one job in RUN mode.
SWEEP_OVERRIDES = (
    "hydra.mode", "hydra.run.", "hydra.sweep.", "hydra.sweeper", "hydra/sweeper", "hydra.launcher",
    "hydra/launcher", "hydra.output_subdir", "hydra.job.num", "hydra.job.id",
)  # fmt: skip
CHILD_EXIT_TIMEOUT_S = 60.0  # children only log and exit after the last collective
# A rank died: how long rank 0 may take to notice by itself (gloo raises in its next collective)
# before the watch stops every process; an NCCL collective would otherwise wait for its timeout.
DEAD_RANK_GRACE_S = 20.0
WATCH_PERIOD_S = 1.0
# Exit statuses of a child that is running, done, or stopped by SIGTERM / SIGUSR1 with last.ckpt
# saved (CheckpointOnSignal); anything else is a rank that died.
STOPPED_ON_PURPOSE = (None, 0, 128 + signal.SIGTERM, 128 + signal.SIGUSR1)

_job_env: dict[str, str | None] = {}
_watch: RankWatch | None = None
_parent: ParentWatch | None = None


def global_rank() -> int:
    """This process's rank, from the environment its launcher set (0 when launched by hand)."""
    if "RANK" in os.environ:  # torchrun
        return int(os.environ["RANK"])
    if "LOCAL_RANK" in os.environ:
        # Lightning's own launcher; checked before SLURM's variables, which a job step sets also
        # when Lightning starts the processes. The sum is not the global rank on other nodes, but
        # it is 0 on global rank 0 alone, which is what counts here.
        return int(os.environ["LOCAL_RANK"]) + int(os.environ.get("NODE_RANK", 0))
    for key in ("SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def start_job() -> None:
    """Call first in a Hydra task: DDP children rerun this job, ranks > 0 log warnings only."""
    compat.replace_launcher_hooks(child_command, watch_children)
    _job_env.clear()
    _job_env.update({key: os.environ.get(key) for key in DDP_ENV})
    rank = global_rank()
    rank_zero_only.rank = rank  # also for launchers Lightning does not know (submitit's local one)
    if rank > 0:
        _quiet_logging(rank)
    if rank > 0 and "LOCAL_RANK" in os.environ and "RANK" not in os.environ:
        _watch_parent(rank)  # a child of Lightning's launcher: rank 0 is its parent


def child_command(local_rank: int) -> tuple[list[str], str]:
    """The command that runs this Hydra job as DDP rank ``local_rank`` (replaces Lightning's
    ``_hydra_subprocess_cmd``, which repeats ``sys.argv`` and so restarts whole sweeps)."""
    import __main__

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    command += [
        o for o in hydra_cfg.overrides.hydra if not o.lstrip("+~").startswith(SWEEP_OVERRIDES)
    ]
    run_dir = hydra_cfg.runtime.output_dir.replace("\\", "\\\\").replace('"', '\\"')
    # RUN mode even where the config itself says MULTIRUN (hparams_search/); no .hydra/ of its own.
    command += [f'hydra.run.dir="{run_dir}"', "hydra.output_subdir=null", "hydra.mode=RUN"]
    log.debug("DDP rank %d: %s", local_rank, command)
    return command, get_original_cwd()


def end_job(trainer: Trainer | None) -> None:
    """Close this job's processes: the process group, Lightning's child processes, and the
    environment Lightning set for them (a sweep's next job then starts afresh). When a child
    died first, raise :class:`RankDiedError` (in place of the collective's error it caused)."""
    launcher = trainer.strategy.launcher if trainer is not None else None
    children: list[subprocess.Popen] = list(getattr(launcher, "procs", []) or [])
    watch = _watch
    if children:
        stop_child_watch()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for child in children:
        try:
            child.wait(timeout=CHILD_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("DDP child %d did not exit; killing it", child.pid)
            child.kill()
            child.wait()
        if child.returncode:
            log.warning("DDP child %d exited with code %d", child.pid, child.returncode)
    for key, value in _job_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if children and watch is not None and watch.failure is not None and trainer is not None:
        raise RankDiedError(*watch.failure, checkpoint=_last_checkpoint(trainer.default_root_dir))
    if _parent is not None and _parent.gone() and trainer is not None:
        raise RankDiedError(0, None, checkpoint=_last_checkpoint(trainer.default_root_dir))


class RankDiedError(RuntimeError):
    """A DDP rank ended by a signal or an error code while the others were training."""

    exit_status = 1  # not bad input (2): the run failed, and a rerun resumes

    def __init__(self, rank: int, returncode: int | None, checkpoint: Path) -> None:
        if returncode is None:
            how = "ended (its process is gone)"
        elif returncode < 0:
            how = f"was killed by {signal.Signals(-returncode).name}"
        else:
            how = f"exited with code {returncode}"
        if checkpoint.is_file():
            resume = f"{checkpoint} is intact: run the same command again to resume from it"
        else:
            resume = f"no checkpoint was saved yet ({checkpoint}): the same command starts over"
        super().__init__(f"DDP rank {rank} {how}; the other ranks were stopped. {resume}")


def _last_checkpoint(run_dir: str | Path | None = None) -> Path:
    """``<run dir>/checkpoints/last.ckpt``: of ``run_dir``, else of this Hydra job."""
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
    return Path(run_dir) / CHECKPOINTS / LAST


def _report_and_die(error: RankDiedError, children: Sequence[subprocess.Popen] = ()) -> None:
    """The one ``error:`` line of a dead rank, then SIGKILL for ``children`` and this process:
    a rank stuck in a collective would otherwise wait for the collective's timeout."""
    message = f"error: {error}"
    log.error(message)
    print(message, file=sys.stderr, flush=True)
    for child in children:
        child.kill()
    os.kill(os.getpid(), signal.SIGKILL)


def watch_children(children: list[subprocess.Popen]) -> None:
    """Lightning's ``ddp`` launcher hands its child processes here (ranks 1… of this node)."""
    global _watch
    _watch = RankWatch(children, global_rank() + 1, _last_checkpoint())
    _watch.start()


def stop_child_watch() -> None:
    """Stop watching the DDP children. Called where this process is ending anyway (an error, a
    signal): it then logs, closes its W&B run, and :func:`end_job` waits for the children."""
    if _watch is not None:
        _watch.stop()


class RankWatch(threading.Thread):
    """Watch the DDP children of rank 0. When one ends with a signal or an error code, rank 0
    usually notices in its next collective (gloo raises), and :func:`end_job` names the rank.
    Where it does not within ``grace_s`` (an NCCL collective waits for its timeout, a long
    validation has none), print that line here and stop every process of the job."""

    def __init__(
        self,
        children: list[subprocess.Popen],
        first_rank: int,
        checkpoint: Path,
        grace_s: float = DEAD_RANK_GRACE_S,
    ) -> None:
        super().__init__(daemon=True, name="classicnets-rank-watch")
        self.children, self.first_rank, self.grace_s = children, first_rank, grace_s
        self.checkpoint = checkpoint
        self.failure: tuple[int, int] | None = None  # (rank, return code) of the first to die
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(WATCH_PERIOD_S) and not self.poll():
            pass
        if self.failure is None or self._stopped.wait(self.grace_s):
            return
        _report_and_die(RankDiedError(*self.failure, checkpoint=self.checkpoint), self.children)

    def poll(self) -> bool:
        """Record the first child that ended with an error; True once one did."""
        if self.failure is None:
            for rank, child in enumerate(self.children, start=self.first_rank):
                if child.poll() not in STOPPED_ON_PURPOSE:
                    self.failure = (rank, child.returncode)
                    break
        return self.failure is not None

    def stop(self) -> None:
        self.poll()  # a child that died before this process's own error is the cause
        self._stopped.set()


class ParentWatch(threading.Thread):
    """In a DDP child of Lightning's launcher: when rank 0, its parent, is gone (killed), stop this
    rank too. Its next collective usually raises first, and :func:`end_job` names rank 0; where it
    does not within the grace (NCCL), local rank 1 says so here and this process ends."""

    def __init__(self, rank: int, checkpoint: Path, grace_s: float = DEAD_RANK_GRACE_S) -> None:
        super().__init__(daemon=True, name="classicnets-parent-watch")
        self.rank, self.checkpoint, self.grace_s = rank, checkpoint, grace_s
        self.parent = os.getppid()

    def gone(self) -> bool:
        return os.getppid() != self.parent  # re-parented: the parent process ended

    def run(self) -> None:
        while not self.gone():
            time.sleep(WATCH_PERIOD_S)
        time.sleep(self.grace_s)
        if self.rank == 1:  # one rank says it; the others end quietly
            _report_and_die(RankDiedError(0, None, checkpoint=self.checkpoint))
        os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent(rank: int) -> None:
    global _parent
    _parent = ParentWatch(rank, _last_checkpoint())
    _parent.start()


class _RankPrefix(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.prefix = f"[rank {rank}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            record.msg = f"{self.prefix}{record.msg}"
        return True


def _quiet_logging(rank: int) -> None:
    """Ranks > 0 share rank 0's log file: warnings and errors only, marked with the rank."""
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
        handler.addFilter(_RankPrefix(rank))


def sweep_id() -> str | None:
    """A name shared by the jobs of one sweep (its directory), or None outside a sweep."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra_cfg.job.name}-{Path(hydra_cfg.sweep.dir).name}"


def job_number() -> int | None:
    """This job's number in its sweep, or None outside a sweep."""
    return int(HydraConfig.get().job.num) if sweep_id() is not None else None


class SubmititEnvironment(ClusterEnvironment):
    """Processes that submitit started, one per device, as its local executor does on one machine
    (``hydra/launcher: submitit_local`` with ``tasks_per_node`` = devices). On SLURM, Lightning's
    own ``SLURMEnvironment`` reads the same processes from SLURM and adds auto-requeue."""

    def __init__(self, main_port: int | None = None) -> None:
        import submitit

        self._job = submitit.JobEnvironment()
        # The same on every task of the job; MASTER_PORT wins when it is set.
        self._main_port = main_port or 20000 + int(str(self._job.job_id).split("_")[0]) % 20000

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", self._job.hostnames[0])

    @property
    def main_port(self) -> int:
        return int(os.environ.get("MASTER_PORT", self._main_port))

    @staticmethod
    def detect() -> bool:
        return "SUBMITIT_EXECUTOR" in os.environ

    def world_size(self) -> int:
        return self._job.num_tasks

    def set_world_size(self, size: int) -> None:
        pass  # submitit decided it

    def global_rank(self) -> int:
        return self._job.global_rank

    def set_global_rank(self, rank: int) -> None:
        pass

    def local_rank(self) -> int:
        return self._job.local_rank

    def node_rank(self) -> int:
        return self._job.node

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        if num_devices * num_nodes != self._job.num_tasks:
            raise ValueError(
                f"submitit started {self._job.num_tasks} processes for trainer.devices="
                f"{num_devices} x trainer.num_nodes={num_nodes}; set hydra.launcher.tasks_per_node "
                "to trainer.devices and hydra.launcher.nodes to trainer.num_nodes"
            )
