"""Which checkpoint a run resumes from, tests, or evaluates, and reading one back."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from classicnets.run import allowlist, resume
from classicnets.run.safe_load import CorruptCheckpointError, load_file

log = logging.getLogger(__name__)

CONFIG_KEY = "classicnets_config"  # the resolved run config, stored in every checkpoint


def resume_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``auto``: the newest whole checkpoint of the run directory (last.ckpt, the one Lightning
    saved for a SLURM requeue, or, when those are cut short, the best one) if there is one, so a
    re-run resumes; else none. A given path must be a whole training checkpoint."""
    if ckpt_path != "auto":
        if ckpt_path:
            resume.read_training_checkpoint(ckpt_path)  # now, not after the data are loaded
        return ckpt_path
    latest = resume.latest_checkpoint(run_dir)
    if latest is not None:
        log.info("resuming from %s", latest)
        return str(latest)
    return None


def best_checkpoint(trainer: Trainer) -> str | None:
    """The best checkpoint by the monitored metric, or None when nothing was saved."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
        return callback.best_model_path
    return None


def final_checkpoint(trainer: Trainer) -> str | None:
    """The file holding the final weights: what the checkpoint without a monitor (last.ckpt)
    wrote last; None when no checkpoint was written (e.g. a fast_dev_run)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            return callback.last_model_path or callback.best_model_path or None
    return None


def load_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint written by train.py (CPU tensors), read without running code from the file."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={path} does not exist; pass a .ckpt from a run's checkpoints/ folder"
        )
    checkpoint = load_file(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CorruptCheckpointError(
            f"ckpt_path={path} is not a checkpoint of a classicnets run (no state_dict); pass a "
            ".ckpt from a run's checkpoints/ folder"
        )
    check_rebuildable(checkpoint, path)
    return checkpoint


def check_rebuildable(checkpoint: Mapping[str, Any], path: str) -> None:
    """What a command rebuilds from the checkpoint names only this project's classes: the stored
    data config's ``_target_``s, and the network's plain hyperparameters (allowlist.py)."""
    from classicnets.training.module import (
        ClassificationModule,  # the module imports the models: late
    )

    stored = checkpoint.get(CONFIG_KEY)
    if isinstance(stored, Mapping) and "data" in stored:
        allowlist.checked_targets(stored["data"], path, f"{CONFIG_KEY}.data")
    allowlist.check_hyper_parameters(checkpoint.get("hyper_parameters"), ClassificationModule, path)
