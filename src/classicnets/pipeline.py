"""The steps that `src/train.py` and `src/eval.py` are made of, importable for tests and scripts."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from classicnets import launch, resume
from classicnets.data.common import per_device_batch_size
from classicnets.logging_setup import configure_wandb
from classicnets.safe_load import CorruptCheckpointError, load_file

log = logging.getLogger(__name__)

CONFIG_KEY = "classicnets_config"  # the resolved run config, stored in every checkpoint


def route_lightning_logs() -> None:
    """Send Lightning's messages through the root logger, so they reach the run's log file."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        lightning_log = logging.getLogger(name)
        lightning_log.handlers.clear()
        lightning_log.propagate = True


def output_dir() -> Path:
    """The Hydra run directory of this job (cwd outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def seed_everything(seed: int | None) -> int:
    """Seed Python, NumPy and torch in this process and in loader workers; returns the seed."""
    return L.seed_everything(seed, workers=True, verbose=False)


class StoreConfig(Callback):
    """Put the resolved run config into every checkpoint, so eval needs no training overrides."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


def instantiate_callbacks(cfg: DictConfig | None, with_logger: bool = True) -> list[Callback]:
    """Every ``_target_`` node of the callbacks group, in config order; the LR monitor only when
    there is a logger to write to (``logger=none``)."""
    if not cfg:
        return []
    callbacks = [hydra.utils.instantiate(n) for n in cfg.values() if n and "_target_" in n]
    return [c for c in callbacks if with_logger or not isinstance(c, LearningRateMonitor)]


def instantiate_loggers(cfg: DictConfig | None, run_dir: Path) -> list[Logger]:
    """Every logger of the logger group; W&B falls back to offline when it cannot reach a server."""
    if not cfg:
        return []
    loggers: list[Logger] = []
    for node in cfg.values():
        if not node or "_target_" not in node:
            continue
        if node._target_.endswith("WandbLogger"):
            node = wandb_identity(configure_wandb(node, run_dir), run_dir)
        loggers.append(hydra.utils.instantiate(node))
    return loggers


def wandb_identity(node: DictConfig, run_dir: Path) -> DictConfig:
    """A re-run in this run directory continues its W&B run (same id, the curves go on); the jobs
    of a sweep are grouped by the sweep and named by their job number."""
    node = node.copy()
    with open_dict(node):
        if not node.get("id"):
            node.id = resume.wandb_run_id(Path(node.get("save_dir") or run_dir))
        sweep = launch.sweep_id()
        if sweep is not None:
            node.group = node.get("group") or sweep
            node.name = f"{node.get('name') or 'job'}-{launch.job_number()}"
    return node


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


def check_global_batch(batch_size: int, trainer: Trainer) -> None:
    """Fail before any process starts when the global batch does not split evenly over them."""
    per_device_batch_size(batch_size, trainer.num_devices * trainer.num_nodes)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats from a Lightning metrics dict, sorted by name."""
    out = {}
    for key, value in sorted(metrics.items()):
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[key] = number if math.isfinite(number) else float("nan")
    return out


@rank_zero_only
def report_metrics(metrics: dict[str, float], run_dir: Path, extra: dict[str, Any]) -> None:
    """Print the final metrics as a table and write them to ``<run dir>/metrics.json``."""
    table = Table(title=f"final metrics — {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    Console().print(table)
    path = run_dir / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**metrics, **extra}, indent=2) + "\n")
    os.replace(tmp, path)  # never a half-written metrics.json
    log.info("metrics written to %s", path)


def best_checkpoint(trainer: Trainer) -> str | None:
    """The best checkpoint by the monitored metric, or None when nothing was saved."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
        return callback.best_model_path
    return None


def finish_loggers(loggers: list[Logger]) -> None:
    """Close W&B runs, so the next job of a sweep starts a run of its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb.finish()


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data with every interpolation resolved."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


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
    return checkpoint


def eval_data_config(cfg: DictConfig, checkpoint: Mapping[str, Any]) -> DictConfig:
    """The data config to evaluate with: the training run's, with this command's ``data.*``
    overrides on top; ``data=NAME`` on the command line replaces it altogether."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    replaced = any(o.split("=", 1)[0].lstrip("+~") == "data" for o in overrides)
    if replaced or CONFIG_KEY not in checkpoint:
        return cfg.data
    data_cfg = OmegaConf.create(checkpoint[CONFIG_KEY]["data"])
    dotted = [o.lstrip("+") for o in overrides if o.lstrip("+").startswith("data.")]
    return OmegaConf.merge(data_cfg, OmegaConf.from_dotlist(dotted))
