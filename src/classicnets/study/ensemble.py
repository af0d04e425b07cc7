"""Ensembles as the papers built them: the softmax of several networks, averaged (AlexNet §6:
"averaging the predictions of five similar CNNs"; GoogLeNet §7: 7 models, 144 crops each)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from classicnets.training.module import ClassificationModule


class SoftmaxAverage(nn.Module):
    """Log of the mean softmax of ``nets``: valid logits, so the module's loss, metrics and
    multi-crop averaging apply to the ensemble as to one network."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, images: Tensor) -> Tensor:
        # In log space: no probability underflows to a tie, and one member keeps its ranking.
        log_probs = torch.stack([net(images).log_softmax(dim=-1) for net in self.nets])
        return log_probs.logsumexp(dim=0) - math.log(len(self.nets))


def ensemble_of(members: Sequence[ClassificationModule]) -> ClassificationModule:
    """A module like the first member whose network is the softmax average of all members'."""
    ensemble = ClassificationModule(**members[0].hparams)
    ensemble.net = SoftmaxAverage([member.net for member in members])
    return ensemble.eval()
