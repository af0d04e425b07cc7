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

Both loaders come from :func:`~classicnets.data.sampling.make_loader` (``DataLoader``'s
arguments): with a ``train_sampler`` it is a torchdata ``StatefulDataLoader`` whose position
Lightning checkpoints, each sample's augmentation drawn from a seed of (seed, epoch, index), so a
run stopped mid-epoch resumes at the next batch, bit for bit.

A DataModule that also keeps a class mapping returns it from ``state_dict`` (Lightning stores it in
every checkpoint), so ``src/eval.py`` can check that other data has the network's classes.

The commands that use a trained network outside training (predict, neighbours) ask the DataModule
itself how a file becomes the network's input, so they work on any dataset without a trainer:
:meth:`~ClassificationDataModule.decode_for_test` turns a file's bytes into the uint8 pixels of
the test protocol, :meth:`~ClassificationDataModule.network_input` a batch of those into the
float input on a device (the same step training's ``on_after_batch_transfer`` takes), and
:meth:`~ClassificationDataModule.item_views` lists a split's images one by one.
CONTRIBUTING.md walks through adding one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import Dataset

# One image's groups of same-size views, for a test protocol that feeds whole images
# (data/protocols.py); a batch of them is one image.
Views = list[list[Tensor]]


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

    @property
    def classes(self) -> list[str]:
        """The class folder of each output index; the index itself where there are no folders."""
        return [str(i) for i in range(self.num_classes)]

    @property
    def class_names(self) -> list[str]:
        """A readable name per output index; the class folders where none are known."""
        return self.classes

    @property
    def takes_whole_images(self) -> bool:
        """Whether the test protocol feeds whole images (groups of views, one image per batch)."""
        return False

    @abstractmethod
    def decode_for_test(self, data: bytes) -> Tensor | Views:
        """A file's bytes → the uint8 pixels the test protocol makes of it. Raises one of
        ``data.folder.DECODE_ERRORS`` for bytes that are not an image."""

    @abstractmethod
    def network_input(self, pixels: Tensor | Views, device: str | torch.device) -> Tensor | Views:
        """A batch of :meth:`decode_for_test` outputs, stacked (or one image's views, for a
        whole-image protocol) → the network's float input on ``device``, as training's device
        step makes it (without training's augmentation)."""

    @abstractmethod
    def item_names(self, split: str) -> list[str]:
        """What each image of ``split`` ("train", "val", "test") is: its file, or its number."""

    @abstractmethod
    def item_views(self, split: str) -> Dataset:
        """Each image of ``split`` once, in :meth:`item_names` order, as ``(pixels, row)``: the
        uint8 pixels of its centre view, which :meth:`network_input` takes stacked, and its row;
        None for a file that does not decode."""

    def picture(self, pixels: Tensor) -> np.ndarray:
        """One :meth:`item_views` view as an (H, W, 3) uint8 picture for a figure."""
        pixels = pixels.reshape(-1, *pixels.shape[-2:])  # grey (H, W) or (1, H, W): one channel
        return pixels.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()
