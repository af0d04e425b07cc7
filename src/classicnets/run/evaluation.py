"""What ``src/eval.py`` evaluates with: the data config of the run that wrote the checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from classicnets.run.checkpoints import CONFIG_KEY


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
