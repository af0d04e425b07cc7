"""What a run starts with: its directory, Lightning's messages in its log, callbacks, trainer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from classicnets.data.common import per_device_batch_size


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


def instantiate_callbacks(cfg: DictConfig | None, with_logger: bool = True) -> list[Callback]:
    """Every ``_target_`` node of the callbacks group, in config order; the LR monitor only when
    there is a logger to write to (``logger=none``)."""
    if not cfg:
        return []
    callbacks = [hydra.utils.instantiate(n) for n in cfg.values() if n and "_target_" in n]
    return [c for c in callbacks if with_logger or not isinstance(c, LearningRateMonitor)]


def instantiate_trainer(cfg: DictConfig, **kwargs: Any) -> Trainer:
    """The Trainer of ``cfg`` (the trainer group). Its ``plugins`` are keyed like callbacks, so the
    trainer/ and launcher/ presets merge into one mapping; the Trainer gets its values as a list,
    in config order, null entries dropped."""
    node = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(node, dict)
    plugins = [hydra.utils.instantiate(p) for p in (node.pop("plugins", None) or {}).values() if p]
    return hydra.utils.instantiate(node, plugins=plugins or None, **kwargs)


def check_global_batch(batch_size: int, trainer: Trainer) -> None:
    """Fail before any process starts when the global batch does not split evenly over them."""
    per_device_batch_size(batch_size, trainer.num_devices * trainer.num_nodes)
