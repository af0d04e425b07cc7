"""Samplers that behave the same on one process and under DDP.

Lightning's automatic DistributedSampler pads the evaluation set so every rank gets the same number
of batches, which counts some images twice; the trainer presets therefore set
``use_distributed_sampler: false`` and the DataModules build their samplers here."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler


def _world() -> tuple[int, int]:
    """(world size, rank), or (1, 0) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def train_sampler(dataset: Sized, seed: int | None = None) -> DistributedSampler:
    """Shuffle with a permutation drawn from (seed, epoch) alone — the same on every rank and after
    a resume, since Lightning calls ``set_epoch`` — and give each rank its share.

    The default seed is the run's (``torch.initial_seed()`` after ``seed_everything``)."""
    world, rank = _world()
    seed = torch.initial_seed() % 2**63 if seed is None else seed
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)


class UnpaddedEvalSampler(Sampler[int]):
    """Rank r takes images r, r + world, r + 2·world, ...: every image exactly once overall."""

    def __init__(self, dataset: Sized) -> None:
        self.length = len(dataset)
        self.world, self.rank = _world()

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))


def eval_sampler(dataset: Sized) -> UnpaddedEvalSampler:
    """The evaluation sampler: in order, unpadded, split over the ranks."""
    return UnpaddedEvalSampler(dataset)
