"""The contract every DataModule of classicnets keeps, written down once.

``src/train.py`` builds the network from the data (``num_classes``, ``in_channels``), and the
trainer presets set ``use_distributed_sampler: false``: Lightning's automatic DistributedSampler
pads evaluation with repeated images, which then count in the accuracy. So a DataModule here
builds its own samplers with :mod:`classicnets.data.sampling`:

- training: :func:`~classicnets.data.sampling.train_sampler` (a permutation drawn from the seed
  and the epoch alone, each rank its share), with ``data.batch_size`` the *global* batch split by
  :func:`~classicnets.data.common.per_device_batch_size`;
- evaluation: :class:`~classicnets.data.sampling.EvenShardBatchSampler` (every image once, the
  same number of batches on every rank).

A DataModule that also keeps a class mapping returns it from ``state_dict`` (Lightning stores it in
every checkpoint), so ``src/eval.py`` can check that other data has the network's classes.
CONTRIBUTING.md walks through adding one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from lightning import LightningDataModule


class ClassificationDataModule(LightningDataModule, ABC):
    """A LightningDataModule that tells the network what it classifies."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """The number of classes: the size of the network's output layer."""

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Channels of the images the loaders yield (1 for MNIST, 3 for RGB photographs)."""
