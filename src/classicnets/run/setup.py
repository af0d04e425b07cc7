"""What a run starts with: its directory, Lightning's messages in its log, callbacks, trainer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning import Callback, Trainer
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf, open_dict

from classicnets.data.common import per_device_batch_size
from classicnets.run import (
    checks,
    rundir,  # noqa: F401  registers ${run_id:} before Hydra composes
)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"  # the repository's conf/ (editable install)


def compose_config(
    config_name: str, overrides: Sequence[str], run_dir: Path, conf_dir: Path = CONF_DIR
) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, as ``python src/<config_name>.py
    overrides...`` composes it, with ``run_dir`` as its Hydra run directory (created) — for tests,
    benchmarks and the diagnostic scripts. Hydra's own errors (an unknown ``model=NAME``, a
    misspelt key) propagate."""
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(run_dir)
    HydraConfig().set_config(cfg)  # ${hydra:runtime.output_dir} resolves to run_dir
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


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
    checks.trainer_arguments({k: v for k, v in node.items() if not k.startswith("_")})
    plugins = [hydra.utils.instantiate(p) for p in (node.pop("plugins", None) or {}).values() if p]
    try:
        return hydra.utils.instantiate(node, plugins=plugins or None, **kwargs)
    except InstantiationException as err:
        # The Trainer's own checks of its arguments (precision, an accelerator that is not
        # there, epoch counts): what they say is the one line
        if isinstance(err.__cause__, (MisconfigurationException, ValueError)):
            raise checks.TrainerArgumentError(
                f"trainer: {err.__cause__}; change the trainer.* value it names (conf/trainer/)"
            ) from err
        raise


def check_global_batch(batch_size: int, trainer: Trainer) -> None:
    """Fail before any process starts when the global batch does not split evenly over them."""
    per_device_batch_size(batch_size, trainer.num_devices * trainer.num_nodes)
