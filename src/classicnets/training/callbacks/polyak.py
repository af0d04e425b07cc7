"""Polyak averaging for GoogLeNet (Szegedy et al. 2014, section 6: "Polyak averaging [13] was used
to create the final model used at inference time").

Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` already keeps an
:class:`torch.optim.swa_utils.AveragedModel` beside the network, swaps the average in for every
validation epoch, copies it into the network when training ends, and writes it to checkpoints as
``state_dict`` (the raw weights go to ``current_model_state``). This subclass only picks the
average and when it starts.
"""

from __future__ import annotations

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from classicnets.run import compat


class PolyakAveraging(WeightAveraging):
    """Average the weights after every optimizer step, from epoch ``start_epoch`` on.

    Args:
        decay: exponential moving average decay. The paper names no rate; TensorFlow's Inception
            training, from the same group, keeps an exponential average of all weights with decay
            0.9999 (tensorflow/models ``inception_train.py``, ``MOVING_AVERAGE_DECAY``) (m).
            ``None`` gives Polyak & Juditsky's (1992) equal-weight mean of the iterates.
        start_epoch: first epoch whose steps enter the average (the mean from a random
            initialisation would be poor; an EMA forgets it anyway).
    """

    def __init__(self, decay: float | None = 0.9999, start_epoch: int = 0) -> None:
        multi_avg_fn = get_ema_multi_avg_fn(decay) if decay is not None else None
        super().__init__(multi_avg_fn=multi_avg_fn)
        self.decay = decay
        self.start_epoch = start_epoch
        self._epoch = 0
        self._swapped = False

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch = trainer.current_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and self._epoch >= self.start_epoch

    def average_module(self) -> LightningModule | None:
        """The averaged copy of the module, once something has been averaged into it."""
        return self._average_model.module if self._has_average() else None

    def _has_average(self) -> bool:
        average = compat.averaged_model(self)
        return average is not None and int(average.n_averaged) > 0

    # Lightning swaps in the average model even before its first update, which would evaluate,
    # keep or save the initial weights while ``start_epoch`` has not come yet; do so only once
    # something has been averaged.
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._swapped = self._has_average()
        if self._swapped:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._swapped:
            super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._has_average():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
