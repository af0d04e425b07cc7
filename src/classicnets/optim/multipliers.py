"""Caffe's per-parameter learning-rate multipliers, for recipes that follow a Caffe model.

Caffe gives each parameter blob an ``lr_mult`` and a ``decay_mult``; bvlc_googlenet and
bvlc_alexnet (train_val.prototxt) give every bias ``lr_mult: 2, decay_mult: 0``. The module
already splits the parameters in two groups when ``model.no_weight_decay`` names some kinds
(``module.parameter_groups``: the second group, weight decay 0); this optimizer lets that group
learn at a multiple of the rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def sgd_with_spared_lr_mult(
    params: Iterable[Any], *, lr: float, spared_lr_mult: float, **sgd_kwargs: Any
) -> torch.optim.SGD:
    """SGD whose parameter groups without weight decay (``weight_decay: 0``, the kinds named in
    ``model.no_weight_decay``) learn at ``lr × spared_lr_mult``, the others at ``lr``. Schedulers
    and warm-up scale every group alike, so the ratio holds throughout. A plain list of
    parameters (no ``model.no_weight_decay``) has no such group: the multiplier then applies to
    nothing, so a recipe sets the two together."""
    if spared_lr_mult <= 0:
        raise ValueError(f"spared_lr_mult must be positive, not {spared_lr_mult}")
    groups = list(params)
    if groups and all(isinstance(g, dict) for g in groups):
        groups = [
            {**g, "lr": lr * spared_lr_mult} if g.get("weight_decay") == 0.0 else g for g in groups
        ]
    return torch.optim.SGD(groups, lr=lr, **sgd_kwargs)
