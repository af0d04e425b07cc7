"""Evaluation batches under DDP that count every image exactly once.

``DistributedSampler`` pads the dataset with repeated images so each rank gets the same number;
the repeats then enter the accuracy. Here each rank takes every ``num_replicas``-th image, no
padding, and splits its share into the same number of batches on every rank (sizes differ by at
most one), so no rank waits in a collective for a batch another rank never runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


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
