"""Model registry: configs name a network by its registry name, never by its class path."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """A registered network: our own counts beside what its paper states, for tables and tests.

    ``params`` and ``gmacs`` are ours, measured on the network the builder makes with its
    defaults (the tests hold them exactly); ``paper_params`` and ``paper_macs`` are the paper's
    figures as printed (rounded), None where the paper states none (docs/recipes.md)."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int  # the paper's training crop, in pixels
    paper: str  # short citation, e.g. "Krizhevsky et al. 2012"
    params: int | None = None  # ours: trainable parameters of the default build
    gmacs: float | None = None  # ours: multiply-adds at input_size, in GMACs
    paper_params: int | None = None  # the paper's parameter count, None where it gives none
    paper_macs: float | None = None  # the paper's multiply-adds at input_size, in GMACs
    torchvision_twin: str | None = None  # torchvision builder of the identical network


_REGISTRY: dict[str, ModelInfo] = {}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def register_model(
    name: str | None = None,
    *,
    input_size: int,
    paper: str,
    params: int | None = None,
    gmacs: float | None = None,
    paper_params: int | None = None,
    paper_macs: float | None = None,
    torchvision_twin: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder to the registry under ``name``, by default the builder's
    own name (so ``grep "def resnet50("`` finds the network); duplicates are refused.

        @register_model(input_size=224, paper="He et al. 2015", params=25_557_032, gmacs=4.089)
        def resnet50(**kwargs: Any) -> ResNet:
            return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        _REGISTRY[key] = ModelInfo(
            key, builder, input_size, paper, params, gmacs, paper_params, paper_macs,
            torchvision_twin,
        )  # fmt: skip
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, e.g. ``list_models("resnet*")``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


# Switches get_model applies to any network, not arguments of its builder.
NETWORK_SWITCHES = ("gap_head",)


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered network ``name`` with the builder's keyword arguments;
    ``gap_head=True``, for any network that flattens: global average pooling in its place
    (``models.heads``)."""
    gap_head = kwargs.pop("gap_head", False)
    net = model_info(name).builder(**kwargs)
    if gap_head:
        from classicnets.models.heads import global_average_head

        net = global_average_head(net)
    return net
