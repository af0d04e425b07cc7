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

from classicnets.run.checks import ConfigValueError


def sgd_with_spared_lr_mult(
    params: Iterable[Any], *, lr: float, spared_lr_mult: float, **sgd_kwargs: Any
) -> torch.optim.SGD:
    """SGD whose parameter groups without weight decay (``weight_decay: 0``, the kinds named in
    ``model.no_weight_decay``) learn at ``lr × spared_lr_mult``, the others at ``lr``. Schedulers
    and warm-up scale every group alike, so the ratio holds throughout. Without such a group (no
    ``model.no_weight_decay``, or kinds the network lacks) a multiplier other than 1 would apply
    to nothing: that is refused."""
    key = "model.optimizer.spared_lr_mult"
    if spared_lr_mult <= 0:
        raise ConfigValueError(key, spared_lr_mult, "use a positive number")
    groups = list(params)
    if groups and all(isinstance(g, dict) for g in groups):
        groups = [{**g, "lr": lr * spared_lr_mult} if _spared(g) else g for g in groups]
    if spared_lr_mult != 1 and not any(isinstance(g, dict) and _spared(g) for g in groups):
        raise ConfigValueError(
            key,
            spared_lr_mult,
            "it sets the rate of the parameters spared weight decay, and this network has none: "
            "name them in model.no_weight_decay (Caffe's recipes: [bias]) or leave the "
            "multiplier out",
        )
    return torch.optim.SGD(groups, lr=lr, **sgd_kwargs)


def _spared(group: dict[str, Any]) -> bool:
    """A parameter group kept out of weight decay (``module.parameter_groups``), not empty."""
    return group.get("weight_decay") == 0.0 and bool(list(group["params"]))
