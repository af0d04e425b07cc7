"""What a stored config may make this process build: this project's own classes, by name.

A checkpoint is read with PyTorch's restricted unpickler (:mod:`classicnets.run.safe_load`), so its
pickle runs nothing; but the run config it carries is handed to ``hydra.utils.instantiate`` to
rebuild the data, and a ``_target_`` there names any importable callable (``numpy.savetxt``,
``shutil.copyfile``...). Hydra's own blocklist (hydra-core >= 1.3.8) stops only a few of them.
So before anything is built from a stored config, every ``_target_`` in the part that is rebuilt
(nested ones first, in lists too, ``_partial_`` ones too) must be a name in
:data:`ALLOWED_TARGETS`; anything else is refused, naming the file and the key.

The network is not built from a ``_target_``: it comes from the model registry by name, with the
plain arguments in ``hyper_parameters`` (:func:`check_hyper_parameters`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

TARGET = "_target_"

# The dotted name a stored config may hold → where that class lives now. When a class moves,
# keep its old name here, pointing to the new place: checkpoints written before the move load.
ALLOWED_TARGETS: Mapping[str, str] = MappingProxyType(
    {
        "classicnets.data.mnist.MNISTDataModule": "classicnets.data.mnist.MNISTDataModule",
        "classicnets.data.imagenet.ImageNetDataModule": (
            "classicnets.data.imagenet.ImageNetDataModule"
        ),
        "classicnets.data.shards.ShardsDataModule": "classicnets.data.shards.ShardsDataModule",
    }
)

# Modules of classicnets that moved, old dotted name -> new: a ``_target_`` stored by a run of an
# older version names the old place (resume compares it with today's config, :func:`migrated`).
MOVED_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "classicnets.module": "classicnets.training.module",
        "classicnets.callbacks.polyak": "classicnets.training.callbacks.polyak",
        "classicnets.callbacks.filter_renorm": "classicnets.training.callbacks.filter_renorm",
        "classicnets.callbacks.sdlm_curvature": "classicnets.training.callbacks.sdlm_curvature",
        "classicnets.callbacks.onednn": "classicnets.training.callbacks.onednn",
        "classicnets.callbacks.filter_grid": "classicnets.study.filter_grid",
        "classicnets.callbacks.resumable": "classicnets.run.callbacks.resumable",
        "classicnets.callbacks.exit_together": "classicnets.run.callbacks.exit_together",
        "classicnets.callbacks.progress": "classicnets.run.callbacks.progress",
        "classicnets.callbacks.throughput": "classicnets.run.callbacks.throughput",
        "classicnets.callbacks.FilterGrid": "classicnets.study.FilterGrid",
        "classicnets.callbacks": "classicnets.training.callbacks",  # its other classes
        "classicnets.launch": "classicnets.run.launch",
        "classicnets.resume": "classicnets.run.resume",
        "classicnets.errors": "classicnets.run.errors",
    }
)
PER_PATTERN_MODULE = "classicnets.training.per_pattern.PerPatternModule"

# Arguments of the module that train.py never stores: code (the optimizer and schedule factories)
# or another file (init_from). A checkpoint that carries them was not written by train.py.
NOT_STORED = ("optimizer", "scheduler", "init_from")


class ForeignTargetError(ValueError):
    """A stored config names code that is not one of this project's classes: refused, nothing
    built."""


def checked_targets(node: Any, source: str, key: str) -> Any:
    """A plain copy of ``node`` (a stored config node, resolved: dicts, lists and scalars) with
    every ``_target_`` replaced by where its class lives now; the first name that is not in
    :data:`ALLOWED_TARGETS`, the deepest first (Hydra builds nested nodes first), raises
    :class:`ForeignTargetError` naming ``source`` and the key."""
    for path, target in _targets(node, key):
        if not isinstance(target, str) or target not in ALLOWED_TARGETS:
            raise ForeignTargetError(
                f"{source}: {path}={target!r} is not one of this project's classes; a stored "
                f"config may only name {', '.join(sorted(ALLOWED_TARGETS))}. The file was "
                "refused and nothing in it was built"
            )
    return _renamed(node)


def _targets(node: Any, key: str) -> Iterator[tuple[str, Any]]:
    """Every ``(dotted key, value)`` of a ``_target_`` below ``node``, children before parents."""
    if isinstance(node, Mapping):
        for name, child in node.items():
            if name != TARGET:
                yield from _targets(child, f"{key}.{name}")
        if TARGET in node:
            yield f"{key}.{TARGET}", node[TARGET]
    elif isinstance(node, list | tuple):
        for i, child in enumerate(node):
            yield from _targets(child, f"{key}[{i}]")


def _renamed(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {
            name: ALLOWED_TARGETS[child] if name == TARGET else _renamed(child)
            for name, child in node.items()
        }
    if isinstance(node, list | tuple):
        return [_renamed(child) for child in node]
    return node


def check_hyper_parameters(hparams: Any, module: type, source: str) -> None:
    """The stored ``hyper_parameters`` hold only ``module``'s own arguments as plain values: a
    registered network name and its builder's arguments, never a ``_target_`` or an argument
    that train.py does not store (:data:`NOT_STORED`)."""
    if not isinstance(hparams, Mapping):
        raise ForeignTargetError(
            f"{source}: it holds no hyper_parameters to rebuild its network from; pass a .ckpt "
            "that src/train.py wrote (a run's checkpoints/ folder)"
        )
    for path, target in _targets(hparams, "hyper_parameters"):
        raise ForeignTargetError(
            f"{source}: {path}={target!r}: the network is rebuilt from the model registry by "
            "name, and a checkpoint written by train.py names no class; the file was refused"
        )
    arguments = set(inspect.signature(module.__init__).parameters) - {"self", *NOT_STORED}
    arguments |= set(getattr(module, "retired_hyperparameters", ()))  # older checkpoints' keys
    for name in hparams:
        if name not in arguments:
            raise ForeignTargetError(
                f"{source}: hyper_parameters.{name} is not an argument that train.py stores "
                f"(those are {', '.join(sorted(arguments))}); the file was refused"
            )


def current_name(target: str) -> str:
    """Where the class an older version stored as ``target`` lives now (the longest moved module
    that ``target`` starts with), or ``target`` itself."""
    for old in sorted(MOVED_MODULES, key=len, reverse=True):
        if target == old or target.startswith(old + "."):
            return MOVED_MODULES[old] + target[len(old) :]
    return target


def migrated(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run config stored by an older version as today's version writes it: every ``_target_``
    at its current place; the general module with ``updates_per_step`` > 1 is now the per-pattern
    module, and ``model.updates_per_step`` of 1, the old default, is no longer written."""

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {
                k: current_name(v) if k == TARGET and isinstance(v, str) else walk(v)
                for k, v in node.items()
            }
        if isinstance(node, list | tuple):
            return [walk(child) for child in node]
        return node

    config = walk(config)
    model = config.get("model")
    if isinstance(model, dict) and "updates_per_step" in model:
        general = model.get(TARGET) == "classicnets.training.module.ClassificationModule"
        if model["updates_per_step"] == 1 and general:
            del model["updates_per_step"]
        elif general:
            model[TARGET] = PER_PATTERN_MODULE
    return config
