"""Checks of the values a user types, made where each value is read: a wrong one raises
:class:`ConfigValueError`, which names the key, the value and what is allowed, and which
:func:`classicnets.errors.exit_on_user_error` turns into one ``error:`` line and exit status 2."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch


class ConfigValueError(ValueError):
    """A config value outside what its key allows."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


def positive_int(key: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is an integer ≥ 1 (or None where ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigValueError(key, value, "use a positive integer" + (" or null" * optional))


def non_negative_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigValueError(key, value, "use an integer >= 0")


def one_of(key: str, value: Any, choices: Collection[str]) -> None:
    if value not in choices:
        raise ConfigValueError(key, value, f"choose from {', '.join(map(str, choices))}")


def optimizer_arguments(key: str, factory: Callable[..., torch.optim.Optimizer] | None) -> None:
    """Build the configured optimizer once on a stand-in parameter, so that the optimizer's own
    checks (torch's "Invalid learning rate: -1", SDLM's) fail now, naming the config key, rather
    than after the data are loaded, as a traceback."""
    if factory is None:
        return
    try:
        factory(params=[torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        arguments = ", ".join(f"{k}={v!r}" for k, v in getattr(factory, "keywords", {}).items())
        name = getattr(getattr(factory, "func", factory), "__name__", "optimizer")
        raise ConfigValueError(key, _Shown(f"{name}({arguments})"), str(err)) from None


class _Shown(str):
    """A value shown as it is, without quotes."""

    def __repr__(self) -> str:
        return str(self)
