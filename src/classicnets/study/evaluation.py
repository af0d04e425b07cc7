"""What ``src/eval.py`` evaluates with: the data config of the run that wrote the checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from classicnets.run.checkpoints import CONFIG_KEY


def eval_data_config(cfg: DictConfig, checkpoint: Mapping[str, Any]) -> DictConfig:
    """The data config to evaluate with: the training run's, with this command's ``data.*``
    overrides on top; ``data=NAME`` on the command line replaces it altogether.

    The overrides are read with Hydra's own parser, so ``~data.x`` deletes, ``+``/``++`` add, and
    values are typed as Hydra types them; interpolations resolve against this command's config
    (``data.root=${paths.data_dir}/x``)."""
    task = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    overrides = OverridesParser.create().parse_overrides(list(task))
    if any(o.key_or_group == "data" for o in overrides) or CONFIG_KEY not in checkpoint:
        return cfg.data
    # The checkpoint's data beside this command's other nodes (paths), for the interpolations.
    context = cfg.copy()
    with open_dict(context):
        context.data = checkpoint[CONFIG_KEY]["data"]
        for override in overrides:
            key = override.key_or_group
            if not key.startswith("data."):
                continue
            parent, _, leaf = key.rpartition(".")
            if override.is_delete():
                node = OmegaConf.select(context, parent)
                if isinstance(node, DictConfig) and leaf in node:
                    node.pop(leaf)
            else:
                OmegaConf.update(context, key, override.value(), merge=False, force_add=True)
    return OmegaConf.create(OmegaConf.to_container(context.data, resolve=True))
