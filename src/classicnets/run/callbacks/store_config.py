"""The resolved run config in every checkpoint, so eval needs no training overrides."""

from __future__ import annotations

from typing import Any

from lightning import Callback, LightningModule, Trainer

from classicnets.run.checkpoints import CONFIG_KEY


class StoreConfig(Callback):
    """Put the resolved run config (plain data) into every checkpoint under ``CONFIG_KEY``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
