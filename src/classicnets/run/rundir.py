"""A run directory belongs to one run: a unique name, a lock while a process writes it, no new run
over a finished one, and a resume that refuses a config computing something else.

Names: ``${now:...}_${run_id:}`` (conf/hydra/default.yaml) adds six random hex digits to the
second the run started, so runs started in the same second, on one machine or many, get
directories of their own. Hydra caches the value in the config, so the jobs of a sweep (also on
other nodes, which receive the config) agree on their sweep directory, and DDP's other ranks get
the directory itself on their command line (:func:`classicnets.run.launch.child_command`).

The lock is an OS lock (``flock``) on ``<run dir>/.lock``, taken by global rank 0 only (the other
ranks of the run work in the same directory); the OS drops it when the process ends, however it
ends, so a stale lock never blocks a rerun. On file systems without ``flock`` (some NFS mounts)
the lock is not available and a warning says so.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from classicnets.run.allowlist import migrated
from classicnets.run.checkpoints import CONFIG_KEY, resume_checkpoint
from classicnets.run.checks import ConfigValueError
from classicnets.run.launch import global_rank
from classicnets.run.resume import candidates, read_training_checkpoint

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are still unique by name
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
RESULTS = "metrics.json"  # written when a run has finished (run/report.py)
RUN_ID_DIGITS = 3  # bytes of randomness: six hex digits beside the second the run started

# Keys that do not change what a resumed run computes: allowed to differ, and logged. Every other
# key of the run config (network, optimizer, schedule, global batch, data, seed, precision...) must
# be what the checkpoint's run used. A prefix ends with "." for a whole group.
SAFE_TO_CHANGE = (
    "trainer.max_epochs", "trainer.max_steps", "trainer.min_epochs", "trainer.devices",
    "trainer.num_nodes", "trainer.strategy", "trainer.accelerator", "trainer.plugins.",
    "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.check_val_every_n_epoch", "trainer.limit_val_batches",
    "trainer.limit_test_batches", "trainer.num_sanity_val_steps", "trainer.deterministic",
    "trainer.benchmark", "trainer.profiler", "trainer.val_check_interval",
    "data.root", "data.num_workers", "data.pin_memory", "data.persistent_workers",
    "data.index_cache_dir", "data.eval_batch_size", "data.val_protocol", "data.test_protocol",
    "logger.", "paths.", "task_name", "tags", "ckpt_path", "train", "test", "optimized_metric",
    "model.compile", "callbacks.",
)  # fmt: skip
# Callbacks that take part in what is computed (the recipe's), unlike checkpoints, progress bars,
# loggers: adding, removing or changing one of these on resume is refused.
COMPUTING_CALLBACKS = ("PolyakAveraging", "SDLMCurvature", "FilterRenorm", "RecomputeBatchNorm")

HYDRA_SUBDIR = ".hydra"  # the run's config.yaml, hydra.yaml and overrides.yaml, as Hydra names it

_held: int | None = None  # the file descriptor of the lock this process holds


def claim(cfg: DictConfig, run_dir: Path) -> str | None:
    """Before anything is built or written: lock the run directory (rank 0), refuse a new run
    over a finished one and a resume that computes something else, then write ``.hydra/``.
    Returns the checkpoint to resume from (None: a new run)."""
    first = global_rank() == 0
    if first:
        lock(run_dir)
    resume = resume_checkpoint(cfg.ckpt_path, run_dir)
    if first and (resume is None or not _inside(Path(resume), run_dir)):
        check_not_finished(run_dir)
    if resume is not None and cfg.get("train", True):
        stored = read_training_checkpoint(resume).get(CONFIG_KEY)
        if isinstance(stored, Mapping):
            if cfg.get("seed") is None and stored.get("seed") is not None:
                cfg.seed = stored["seed"]  # seed=null drew one at random: the run's, on resume
                log.info("resuming with the run's seed %s", cfg.seed)
            new = OmegaConf.to_container(cfg, resolve=True)
            check_same_computation(migrated(stored), new, resume)  # type: ignore[arg-type]
        else:
            log.warning("%s holds no run config: resuming without comparing configs", resume)
    if first:
        write_hydra_files(cfg, run_dir)
    return resume


def write_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra writes into ``.hydra/`` before a job starts, written only once the run may
    use the directory (conf/train.yaml sets ``hydra.output_subdir: null``)."""
    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is not None:
        return  # Hydra has written them (another output_subdir), or no Hydra job (tests)
    folder = run_dir / HYDRA_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    hydra_cfg = HydraConfig.get()
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.overrides.task, folder / "overrides.yaml")


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def register_resolvers() -> None:
    """``${run_id:}``: six random hex digits, the same wherever one config resolves it."""
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver(
            "run_id", lambda: secrets.token_hex(RUN_ID_DIGITS), use_cache=True
        )


class RunDirError(ConfigValueError):
    """A run directory that this run may not write: busy, finished, or another run's."""

    def __init__(self, key: str, message: str) -> None:
        ValueError.__init__(self, message)
        self.key, self.value, self.allowed = key, None, message


def lock(run_dir: Path) -> None:
    """Hold ``<run_dir>/.lock`` until this process ends (or locks another run directory, as the
    jobs of a sweep do one after another); raise :class:`RunDirError` if a process holds it."""
    global _held
    release()
    if fcntl is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirError(
            "hydra.run.dir",
            f"run directory {run_dir} is in use by another process (pid {holder}); wait for it "
            "to end, or pass another hydra.run.dir",
        ) from None
    except OSError as err:  # a file system without flock
        os.close(fd)
        log.warning("cannot lock %s (%s): nothing stops a second process there", run_dir, err)
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held = fd


def release() -> None:
    """Let go of the lock this process holds, if any."""
    global _held
    if _held is not None:
        os.close(_held)  # closing the last descriptor drops the flock
        _held = None


def check_not_finished(run_dir: Path) -> None:
    """A new run (``ckpt_path=null``) never writes over the checkpoints or results of another."""
    found = [p.name for p in candidates(run_dir)] + [RESULTS] * (run_dir / RESULTS).is_file()
    if found:
        raise RunDirError(
            "ckpt_path",
            f"run directory {run_dir} already holds a run ({', '.join(sorted(found)[:3])}); "
            "a new run (ckpt_path=null) would overwrite it: pass ckpt_path=auto to resume that "
            "run, or leave hydra.run.dir out to start a directory of its own",
        )


def check_same_computation(stored: Mapping[str, Any], new: Mapping[str, Any], source: str) -> None:
    """Refuse to resume a run whose config computes something else than the checkpoint's run
    (one line naming the keys); log the keys that differ harmlessly."""
    old_flat, new_flat = dict(_flatten(stored)), dict(_flatten(new))
    changed = sorted(
        k for k in old_flat.keys() | new_flat.keys() if _differs(k, old_flat, new_flat)
    )
    refused = sorted(
        (k for k in changed if not _safe_to_change(k, old_flat, new_flat)), key=_importance
    )
    if refused:
        shown = ", ".join(_change(k, old_flat, new_flat) for k in refused[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        raise RunDirError(
            refused[0],
            f"cannot resume {source} with a config that computes something else: {shown}{more}; "
            "resume with the run's own values, or start a new run in another hydra.run.dir",
        )
    for key in changed:
        log.info("resuming with %s", _change(key, old_flat, new_flat))


def _importance(key: str) -> tuple[int, str]:
    """The network and its optimizer first, then the data, the seed, the rest."""
    order = ("model.", "data.", "seed", "trainer.", "callbacks.")
    return next((i for i, p in enumerate(order) if key.startswith(p)), len(order)), key


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


_MISSING = object()


def _differs(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return old.get(key, _MISSING) != new.get(key, _MISSING)


def _safe_to_change(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    if key.startswith("callbacks."):
        name = key.split(".")[1]
        targets = (old.get(f"callbacks.{name}._target_"), new.get(f"callbacks.{name}._target_"))
        return not any(str(t).rsplit(".", 1)[-1] in COMPUTING_CALLBACKS for t in targets if t)
    return any(
        key == p.rstrip(".") or (p.endswith(".") and key.startswith(p)) for p in SAFE_TO_CHANGE
    )


def _change(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    before, after = old.get(key, _MISSING), new.get(key, _MISSING)
    if before is _MISSING:
        return f"{key} added ({_short(after)})"
    if after is _MISSING:
        return f"{key} removed (was {_short(before)})"
    return f"{key} {_short(before)} -> {_short(after)}"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


register_resolvers()
