"""What training steps produce that needs no answer at once, kept on the device and looked at
once per window of steps: whether the loss stayed finite, and the predictions for the training
metrics. Per step that is a few list appends; a host sync, an all-reduce or a torchmetrics update
(~0.1 ms each on CPU, a per-pattern LeNet-5 step is ~2 ms) happens once per window."""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import Strategy
from torch import Tensor


class StepWindow:
    """The records of the training steps since the window was last cleared."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []  # (epoch, global step) of each record
        self.losses: list[Tensor] = []
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, epoch: int, step: int, loss: Tensor, logits: Tensor, targets: Tensor) -> None:
        loss = loss.detach()
        self.steps.append((epoch, step))
        self.losses.append(loss)
        self.preds.append(logits.detach().argmax(dim=-1))  # top-1 only: B ints, not B × C
        self.targets.append(targets)

    def first_non_finite(self, strategy: Strategy) -> tuple[int, int] | None:
        """(epoch, global step) of this rank's first non-finite loss, (-1, -1) when only another
        rank had one, None when every rank's losses were finite. Every rank must call it."""
        flags = torch.isfinite(torch.stack(self.losses)) if self.losses else torch.ones(1).bool()
        bad = not bool(flags.all())  # the window's one host sync
        if not strategy.reduce_boolean_decision(bad, all=False):
            return None
        if not bad:
            return (-1, -1)
        return self.steps[int((~flags).nonzero()[0, 0])]

    def stacked(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(predicted classes, targets, per-step mean losses, per-step batch sizes)."""
        sizes = torch.tensor([len(t) for t in self.targets], device=self.losses[0].device)
        return torch.cat(self.preds), torch.cat(self.targets), torch.stack(self.losses), sizes

    def clear(self) -> None:
        for records in (self.steps, self.losses, self.preds, self.targets):
            records.clear()
