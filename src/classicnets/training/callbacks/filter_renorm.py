"""ZFNet's filter renormalisation (Zeiler & Fergus 2013, section 3): "we renormalize each filter
in the convolutional layers whose RMS value exceeds a fixed radius of 10^-1 to this fixed radius",
because without it a few first-layer filters came to dominate."""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.hooks import RemovableHandle


@torch.no_grad()
def renorm_filters_(module: nn.Module, max_rms: float = 0.1) -> None:
    """Rescale, in place, every conv filter (one output channel's weights) of ``module`` whose RMS
    exceeds ``max_rms`` to RMS ``max_rms``; biases and other layers are left alone."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            w = conv.weight
            rms = w.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            w.mul_((max_rms / rms).clamp(max=1.0))


class FilterRenorm(Callback):
    """Apply :func:`renorm_filters_` to the LightningModule after every optimizer step.

    Hooked on the optimizers themselves (``register_step_post_hook``), so it runs exactly once per
    real step whatever the gradient accumulation, and not for steps the AMP scaler skips."""

    def __init__(self, max_rms: float = 0.1) -> None:
        self.max_rms = max_rms
        self._handles: list[RemovableHandle] = []

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        def renorm(*_: Any) -> None:
            renorm_filters_(pl_module, self.max_rms)

        self._handles = [opt.register_step_post_hook(renorm) for opt in trainer.optimizers]

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
