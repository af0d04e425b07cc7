"""Samplers and loaders that behave the same on one process, under DDP and after a resume.

Lightning's automatic DistributedSampler pads the evaluation set with repeated images so every rank
gets the same number, and the repeats then enter the accuracy; the trainer presets therefore set
``use_distributed_sampler: false`` and the DataModules build their samplers here. For evaluation,
each rank takes every ``num_replicas``-th image, no padding, split into the same number of batches
on every rank (sizes differ by at most one), so no rank waits in a collective for a batch another
rank never runs.

Training resumes anywhere in an epoch: the loader is torchdata's ``StatefulDataLoader``, whose
position Lightning saves in every checkpoint and restores, and each training sample draws its
augmentation from a seed of its own, a function of (run seed, epoch, index) alone. The random
crops, flips and distortions of a sample are then the same with any number of workers, any number
of ranks and after a resume, and loading data never moves the main process's generators (whose
states the checkpoints hold for dropout and the like)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

# torchdata 0.11 calls a torch function that newer torch deprecates, once per loader: not ours.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


def world() -> tuple[int, int]:
    """(world size, rank), or (1, 0) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class SeededSampler(StatefulDistributedSampler):
    """torchdata's ``StatefulDistributedSampler`` (which keeps its position in the epoch) whose
    items are ``(index, sample seed)``: the seed of each image's augmentation in this epoch, drawn
    from (seed, epoch) alone like the permutation. Its state holds the epoch too: Lightning sets
    the epoch only after it has restored the loader and drawn the first batch.

    The position is global: ``position`` images of the epoch's permutation have been handed out
    over all ranks (rank r takes every ``num_replicas``-th from its offset r, so the images seen
    are always the permutation's first ``position``). A state saved under another number of
    ranks therefore resumes exactly: the ranks share the rest of the permutation, each image once
    (padded, like ``DistributedSampler``, with the permutation's first images to an even split).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start = 0  # the global position this rank's iteration began at
        self._resume_at: int | None = None  # a loaded position, for the next iteration
        self.saved_world_size: int | None = None  # the ranks that wrote the loaded state

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        entropy = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)
        seeds = torch.Generator().manual_seed(int(entropy[0]))
        sample_seeds = torch.randint(2**62, (len(self.dataset),), generator=seeds).tolist()
        self._start, self._resume_at = self._resume_at or 0, None
        self.yielded = 0
        for index in self._share(self._start):
            self.yielded += 1
            yield index, sample_seeds[index]

    def _share(self, start: int) -> list[int]:
        """This rank's images of the epoch from global position ``start`` on; from 0 the same
        as ``DistributedSampler``'s."""
        size = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            order = torch.randperm(
                size, generator=torch.Generator().manual_seed(self.seed + self.epoch)
            )
            indices = order.tolist()
        else:
            indices = list(range(size))
        rest = max(0, size - start)
        if self.drop_last:
            end = start + rest - rest % self.num_replicas
        else:  # padded from the permutation's head, as DistributedSampler pads
            end = start + rest + -rest % self.num_replicas
            indices += indices * math.ceil(max(0, end - size) / max(size, 1))
        return indices[start + self.rank : end : self.num_replicas]

    @property
    def position(self) -> int:
        """Images of this epoch handed out so far, over all ranks."""
        if self._resume_at is not None:
            return self._resume_at
        return self._start + self.yielded * self.num_replicas

    def samples_left(self) -> int:
        """This rank's images still to come in the epoch (from a loaded position if pending)."""
        return len(self._share(self.position))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "epoch": self.epoch,
            "position": self.position,
            "world_size": self.num_replicas,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.set_epoch(state_dict["epoch"])
        self.saved_world_size = state_dict.get("world_size", self.num_replicas)
        # A state without a position was written under this sampler's number of ranks.
        self._resume_at = state_dict.get("position", state_dict["yielded"] * self.num_replicas)


class PerSampleSeed(Dataset):
    """``dataset[index]`` drawn with torch's CPU generator seeded by the sampler's sample seed, and
    that generator put back afterwards (CUDA's is not touched). A plain index reads the dataset as
    it is (callbacks that draw samples of their own, e.g. ``SDLMCurvature``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)


def train_sampler(dataset: Sized, seed: int | None = None) -> SeededSampler:
    """Shuffle with a permutation drawn from (seed, epoch) alone — the same on every rank and after
    a resume, since Lightning calls ``set_epoch`` — and give each rank its share.

    The default seed is the run's (``torch.initial_seed()`` after ``seed_everything``)."""
    world_size, rank = world()
    seed = torch.initial_seed() % 2**63 if seed is None else seed
    return SeededSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)


def make_loader(dataset: Dataset, **kwargs: Any) -> DataLoader:
    """The loader of every DataModule, ``DataLoader``'s arguments. With a :func:`train_sampler`:
    a ``StatefulDataLoader`` over per-sample seeds, whose position Lightning checkpoints, so a run
    resumed mid-epoch goes on with the next batch. Otherwise (evaluation) a plain ``DataLoader``.
    Both draw their workers' base seed from a generator of their own, not the global one."""
    sampler = kwargs.get("sampler")
    generator = torch.Generator().manual_seed(getattr(sampler, "seed", 0))
    if isinstance(sampler, SeededSampler):
        return StatefulDataLoader(PerSampleSeed(dataset), generator=generator, **kwargs)
    return DataLoader(dataset, generator=generator, **kwargs)


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
