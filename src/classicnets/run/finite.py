"""No NaN is written up as a result: weights and metrics that are not finite end the command."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch


class NonFiniteError(FloatingPointError):
    """Weights or a metric are NaN or infinite: a number that means nothing, refused."""


def check_weights(state_dict: Mapping[str, object], source: str) -> None:
    """Every floating-point tensor of ``state_dict`` is finite; else name the first bad one.
    (A diverged network evaluates to chance-level accuracy and NaN losses, not to an error.)"""
    floats = {k: v for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()}
    bad = [name for name, value in floats.items() if not torch.isfinite(value).all()]
    if bad:
        raise NonFiniteError(
            f"{source}: {len(bad)} of its weight tensors hold NaN or infinite values (the first: "
            f"{bad[0]}); the network diverged before this checkpoint was written. Use an earlier "
            "checkpoint of the run, or train again with a lower learning rate"
        )


def non_finite(metrics: Mapping[str, float]) -> list[str]:
    """The names of the metrics that are NaN or infinite."""
    return [key for key, value in metrics.items() if not math.isfinite(value)]


def check_metrics(names: Iterable[str], where: str) -> None:
    """Raise :class:`NonFiniteError` when ``names`` (of non-finite metrics) is not empty."""
    names = list(names)
    if names:
        raise NonFiniteError(
            f"{', '.join(names)} came out NaN or infinite (written as null in {where}); the "
            "network's outputs are not finite on this data: check the weights and the data"
        )
