"""Pieces every DataModule shares: the global-batch rule and the missing-data error."""

from __future__ import annotations

from classicnets.run.checks import ConfigValueError


class DatasetNotFoundError(FileNotFoundError):
    """Raised at once when a dataset is missing; the message says how to prepare it."""


class ClassMismatchError(ValueError):
    """The data's classes are not the ones a checkpoint was trained on: its outputs would be
    scored against other classes."""


def per_device_batch_size(global_batch_size: int, world_size: int) -> int:
    """The paper's batch is global: each of ``world_size`` processes takes an equal share."""
    if global_batch_size % world_size:
        raise ConfigValueError(
            "data.batch_size",
            global_batch_size,
            f"the global batch must divide evenly over the {world_size} devices "
            f"(trainer.devices x trainer.num_nodes); pick a multiple of {world_size}",
        )
    return global_batch_size // world_size
