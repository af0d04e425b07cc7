"""Samplers that behave the same on one process and under DDP.

Lightning's automatic DistributedSampler pads the evaluation set with repeated images so every rank
gets the same number, and the repeats then enter the accuracy; the trainer presets therefore set
``use_distributed_sampler: false`` and the DataModules build their samplers here. For evaluation,
each rank takes every ``num_replicas``-th image, no padding, split into the same number of batches
on every rank (sizes differ by at most one), so no rank waits in a collective for a batch another
rank never runs."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler


def world() -> tuple[int, int]:
    """(world size, rank), or (1, 0) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def train_sampler(dataset: Sized, seed: int | None = None) -> DistributedSampler:
    """Shuffle with a permutation drawn from (seed, epoch) alone — the same on every rank and after
    a resume, since Lightning calls ``set_epoch`` — and give each rank its share.

    The default seed is the run's (``torch.initial_seed()`` after ``seed_everything``)."""
    world_size, rank = world()
    seed = torch.initial_seed() % 2**63 if seed is None else seed
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)


class EvenShardBatchSampler(Sampler[list[int]]):
    """Batches of at most ``batch_size`` indices of this rank's shard, in order.

    Every rank yields ``len(self)`` batches, unless the dataset has fewer images than that
    takes (fewer than about ``num_replicas × batches``), where the short ranks yield fewer
    rather than an empty batch.
    """

    def __init__(self, num_samples: int, batch_size: int, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.indices = np.arange(rank, num_samples, num_replicas)
        # The largest shard sets the number of batches for all ranks.
        largest = math.ceil(num_samples / num_replicas)
        self.num_batches = math.ceil(largest / batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.num_batches:
            return
        for batch in np.array_split(self.indices, self.num_batches):
            if len(batch):
                yield batch.tolist()

    def __len__(self) -> int:
        return min(self.num_batches, len(self.indices))
