"""Model registry: configs name a network by its registry name, never by its class path."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """What the paper says about a registered network, for tables and tests."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int  # the paper's training crop, in pixels
    paper: str  # short citation, e.g. "Krizhevsky et al. 2012"
    paper_params: int | None = None  # the figure the tests hold us to (RECIPES.md)
    paper_macs: float | None = None  # multiply-adds at input_size, in GMACs (RECIPES.md)
    torchvision_twin: str | None = None  # torchvision builder of the identical network


_REGISTRY: dict[str, ModelInfo] = {}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def register_model(
    name: str,
    *,
    input_size: int,
    paper: str,
    paper_params: int | None = None,
    paper_macs: float | None = None,
    torchvision_twin: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder to the registry under ``name``; duplicates are refused."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name, builder, input_size, paper, paper_params, paper_macs, torchvision_twin
        )
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


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered network ``name`` with the builder's keyword arguments."""
    return model_info(name).builder(**kwargs)
