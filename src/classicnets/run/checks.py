"""Checks of the values a user types, made where each value is read: a wrong one raises
:class:`ConfigValueError`, which names the key, the value and what is allowed, and which
:func:`classicnets.run.errors.exit_on_user_error` turns into one ``error:`` line and exit
status 2."""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import hydra
import torch
from lightning import Trainer
from omegaconf import DictConfig, OmegaConf

from classicnets.models.registry import model_info


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


def optimizer_arguments(
    key: str,
    factory: Callable[..., torch.optim.Optimizer] | None,
    params: list[Any] | None = None,
) -> None:
    """Build the configured optimizer once on ``params`` (the run's parameter groups; default a
    stand-in parameter), so that the optimizer's own checks (torch's "Invalid learning rate:
    -1", SDLM's, ours) fail now, naming the config key, rather than after the data are loaded,
    as a traceback."""
    if factory is None:
        return
    _optimizer_ranges(key, getattr(factory, "keywords", {}))
    try:
        factory(params=params if params is not None else [torch.nn.Parameter(torch.zeros(1))])
    except ConfigValueError:
        raise  # already names its key
    except (ValueError, TypeError) as err:
        arguments = ", ".join(f"{k}={v!r}" for k, v in getattr(factory, "keywords", {}).items())
        name = getattr(getattr(factory, "func", factory), "__name__", "optimizer")
        raise ConfigValueError(key, _Shown(f"{name}({arguments})"), str(err)) from None


class _Shown(str):
    """A value shown as it is, without quotes."""

    def __repr__(self) -> str:
        return str(self)


class MissingValueError(ValueError):
    """A config value left at ``???`` that the command needs."""

    def __init__(self, keys: Collection[str]) -> None:
        named = ", ".join(keys)
        example = " ".join(f"{key}=..." for key in keys)
        super().__init__(f"{named} must be given: pass {example} on the command line")


def required_values(cfg: DictConfig) -> None:
    """Every ``???`` in the config is filled (``python src/eval.py`` without ``ckpt_path=``)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise MissingValueError(missing)


def finite_numbers(cfg: DictConfig) -> None:
    """No number in the config is NaN or infinite (``model.optimizer.lr=nan``): no key of ours
    takes one, and torch's own checks (``lr < 0``) let NaN through."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key, value in _leaves(container, ""):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigValueError(key, _Shown(str(value)), "use a finite number")


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{prefix}[{i}]")
    else:
        yield prefix, node


def target_arguments(cfg: DictConfig, *keys: str) -> None:
    """Every ``_target_`` node under ``keys`` names only arguments its target takes, so that a
    misspelt or invented key (``+model.bogus=1``) is refused by name before anything is built,
    not as a TypeError from deep inside instantiation."""
    for key in keys:
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig):
            _check_targets(OmegaConf.to_container(node, resolve=False), key)


def _check_targets(node: Any, key: str) -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            _check_arguments(target, node, key)
        for name, value in node.items():
            _check_targets(value, f"{key}.{name}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_targets(value, f"{key}[{i}]")


def _check_arguments(target: str, node: dict[str, Any], key: str) -> None:
    try:
        parameters = _class_parameters(hydra.utils.get_object(target))
    except (ImportError, AttributeError, ValueError, TypeError):
        return  # Hydra names a target it cannot find when it instantiates it
    if parameters is None:
        return
    for name, value in node.items():
        if not name.startswith("_") and name not in parameters:
            raise ConfigValueError(
                f"{key}.{name}",
                value,
                f"{target.rsplit('.', 1)[-1]} takes no argument {name!r}; check the spelling "
                f"(it takes {', '.join(parameters)})",
            )


def _class_parameters(target: Any) -> dict[str, inspect.Parameter] | None:
    """The keyword arguments ``target`` takes; a class whose ``__init__`` passes ``**kwargs`` on
    to its base (the per-pattern module) is followed up its bases. None: any keyword goes."""
    if not isinstance(target, type):
        parameters = dict(inspect.signature(target).parameters)
        var = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        return None if var else parameters
    found: dict[str, inspect.Parameter] = {}
    for cls in target.__mro__:
        if "__init__" not in vars(cls):
            continue
        if cls is object:
            break
        own = dict(inspect.signature(cls.__init__).parameters)
        own.pop("self", None)
        var = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values())
        found.update({n: p for n, p in own.items() if p.kind is not inspect.Parameter.VAR_KEYWORD})
        found = {n: p for n, p in found.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
        if not var:
            return found
        if cls.__module__.split(".")[0] != "classicnets":
            return None  # a library's class that takes **kwargs: any keyword goes
    return None


def builder_arguments(key: str, name: str, builder: Callable[..., Any], kwargs: dict) -> None:
    """The network's builder takes every key of ``model.net`` (``+model.net.bogus=1``)."""
    accepted = _keywords(builder)
    if accepted is None:
        return
    shown = [p for p in dict.fromkeys(accepted) if p not in ("num_classes", "in_channels")]
    for argument, value in kwargs.items():
        if argument not in accepted:
            raise ConfigValueError(
                f"{key}.{argument}",
                value,
                f"{name} takes no argument {argument!r}; check the spelling (it takes "
                f"{', '.join(shown) or 'none'})",
            )


def _keywords(function: Callable[..., Any]) -> list[str] | None:
    """The keywords ``function`` takes; a builder ``def vgg16(**kwargs) -> VGG`` takes those of
    the class it returns. None where that cannot be told."""
    parameters = inspect.signature(function).parameters.values()
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        return named
    try:
        # a functools.partial of a builder (VGG's) returns what the builder returns
        returned = typing.get_type_hints(getattr(function, "func", function)).get("return")
    except (NameError, TypeError):
        return None
    passed_on = _keywords(returned) if isinstance(returned, type) else None
    return None if passed_on is None else named + passed_on


class TrainerArgumentError(ValueError):
    """A ``trainer.*`` value that Lightning's Trainer refuses."""


def trainer_arguments(arguments: dict[str, Any]) -> None:
    """Each ``trainer.*`` value has the type the Trainer declares (``trainer.max_epochs=abc`` is
    refused here; the Trainer itself would take it and fail mid-run)."""
    hints = typing.get_type_hints(Trainer.__init__)
    for name, value in arguments.items():
        if name not in hints:
            raise ConfigValueError(
                f"trainer.{name}", value, "the Trainer takes no such argument; check the spelling"
            )
        if not _fits(value, hints[name]):
            raise ConfigValueError(f"trainer.{name}", value, f"use {_describe(hints[name])}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (plain config data) fits the type ``hint``; unknown kinds of hint pass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else True
    if isinstance(value, (str, int, float, bool)) and isinstance(hint, type):
        return isinstance(value, hint)  # e.g. a string where only a Logger object will do
    return True


def _describe(hint: Any) -> str:
    """``Optional[int]`` → "an integer or null"."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint is type(None):
        return "null"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def number_in(
    key: str, value: Any, low: float, high: float = math.inf, *, open_high: bool = False
) -> None:
    """``value`` is a number in [low, high] (or [low, high) where ``open_high``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigValueError(key, value, "use a number")
    if not low <= value <= high or (open_high and value == high):
        allowed = (
            f">= {low:g}"
            if high == math.inf
            else f"in [{low:g}, {high:g}{')' if open_high else ']'}"
        )
        raise ConfigValueError(key, value, f"use a number {allowed}")


# The optimizers' arguments that torch leaves unchecked or checks only for < 0 (SGD takes a
# momentum of 5 and a NaN learning rate): (lowest, highest, whether the highest is excluded).
OPTIMIZER_RANGES = {
    "lr": (0.0, math.inf, False),
    "momentum": (0.0, 1.0, True),
    "dampening": (0.0, 1.0, False),
    "weight_decay": (0.0, math.inf, False),
    "alpha": (0.0, 1.0, False),  # RMSprop's smoothing constant
    "eps": (0.0, math.inf, False),
}


def _optimizer_ranges(key: str, keywords: Mapping[str, Any]) -> None:
    for name, (low, high, open_high) in OPTIMIZER_RANGES.items():
        if isinstance(keywords.get(name), (int, float)):
            number_in(f"{key}.{name}", keywords[name], low, high, open_high=open_high)
    for i, beta in enumerate(keywords.get("betas") or ()):
        number_in(f"{key}.betas[{i}]", beta, 0.0, 1.0, open_high=True)


class StateDictMismatchError(ValueError):
    """Weights in a checkpoint that do not fit the network they are loaded into."""


def state_dict_fits(own: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
    """``state`` (a checkpoint's) has the tensors of ``own`` (the network's), shape for shape:
    the same rule as ``model.init_from``, before ``load_state_dict`` fails with a traceback."""
    hint = (
        "use a checkpoint of this network, built as it was (model and net options, the data's "
        "classes); a resumed run needs the config that trained it"
    )
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if missing or unexpected:
        first = (
            f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which the network has not"
        )
        raise StateDictMismatchError(
            f"the checkpoint's weights do not fit the network: it {first} ({len(missing)} "
            f"missing, {len(unexpected)} unexpected tensors); {hint}"
        )
    for key, tensor in own.items():
        theirs = state[key]
        if isinstance(theirs, torch.Tensor) and theirs.shape != tensor.shape:
            raise StateDictMismatchError(
                f"the checkpoint's {key} has shape {tuple(theirs.shape)}, this network's "
                f"{tuple(tensor.shape)}; {hint}"
            )


def input_fits(net: Mapping[str, Any], in_channels: int, size: int) -> None:
    """The network of ``model.net`` (its name and builder arguments) takes ``size``×``size``
    inputs: a crop too small for its pooling (AlexNet at ``data.input_size=8``) is refused now,
    not as a traceback at the first batch. Built on the meta device, the network costs no
    memory and no arithmetic."""
    name, kwargs = net["name"], {k: v for k, v in net.items() if k != "name"}
    with torch.device("meta"):
        built = model_info(name).builder(num_classes=2, in_channels=in_channels, **kwargs)
        try:
            built.eval()(torch.empty(1, in_channels, size, size))
        except RuntimeError as err:
            smallest = model_info(name).input_size
            raise ConfigValueError(
                "data.input_size",
                size,
                f"{name}'s feature map vanishes at {size}×{size} ({str(err).splitlines()[0]}); "
                f"use a larger crop (the paper's: {smallest})",
            ) from None
