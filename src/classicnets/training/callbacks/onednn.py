"""Turn off oneDNN (MKL-DNN) for the length of a run, where its setup cost is the step."""

from __future__ import annotations

import torch
from lightning import Callback, LightningModule, Trainer


class DisableOneDNN(Callback):
    """``torch.backends.mkldnn.enabled = False`` from setup to teardown. oneDNN prepares every
    convolution call; for LeNet-5's 5×5 convolutions at one pattern a step that preparation
    costs more than the arithmetic (our measurement: a per-pattern step 2.7 ms with it, 1.65 ms
    without, 1 thread). Large convolutions want it on: the big recipes leave it alone."""

    def __init__(self) -> None:
        self._previous: bool | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous is None:
            self._previous = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous is not None:
            torch.backends.mkldnn.enabled = self._previous
            self._previous = None
