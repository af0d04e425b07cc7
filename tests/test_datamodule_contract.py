"""Every data config builds a DataModule that keeps the written contract (data/base.py),
including what the study commands (predict, neighbours) ask of it without a trainer."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from classicnets.data.base import ClassificationDataModule
from classicnets.data.folder import FileIndex
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.mnist import MNISTDataModule
from classicnets.run.setup import compose_config
from run_helpers import CONF_DIR

DATA_CONFIGS = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_is_a_classification_datamodule(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"data={name}"], tmp_path)
    target = hydra.utils.get_class(cfg.data._target_)
    assert issubclass(target, ClassificationDataModule)
    assert not target.__abstractmethods__  # num_classes and in_channels are defined


def test_the_digits_tell_the_network_what_it_classifies(tmp_path: Path) -> None:
    datamodule = hydra.utils.instantiate(compose_config("train", [], tmp_path).data)
    assert (datamodule.num_classes, datamodule.in_channels) == (10, 1)


def test_the_digits_reach_the_network_of_the_study_commands_as_they_reach_it_in_training(
    tmp_path: Path,
) -> None:
    """item_views' uint8 digits through network_input are the split's LeNet-5 input, bit for
    bit; at an ImageNet recipe's input size (model=alexnet data=mnist) the same, resized as the
    training batches are."""
    for input_size in (None, 227):
        datamodule = MNISTDataModule(input_size=input_size)
        pixels, rows = next(iter(DataLoader(datamodule.item_views("val"), batch_size=4)))
        assert pixels.dtype == torch.uint8 and rows.tolist() == [0, 1, 2, 3]
        expected = datamodule.splits["val"].tensors[0][:4]
        if input_size is not None:
            expected = F.interpolate(expected, size=(227, 227), mode="bilinear")
        assert torch.equal(datamodule.network_input(pixels, "cpu"), expected)
    assert datamodule.item_names("val")[:2] == ["val digit 0", "val digit 1"]
    assert datamodule.classes == datamodule.class_names == [str(d) for d in range(10)]
    picture = datamodule.picture(pixels[0])
    assert picture.shape == (28, 28, 3) and picture.max() == 255  # white paper, dark ink


def test_imagenet_feeds_a_file_to_the_network_as_evaluation_does(fake_imagenet: Path) -> None:
    """decode_for_test is the test protocol's sample; network_input its evaluation device step
    (the paper's pixel scale, no augmentation) without a trainer."""
    datamodule = ImageNetDataModule(fake_imagenet, input_size=64, test_protocol="ten_crop")
    datamodule.setup("test")
    path = datamodule.item_names("test")[3]
    pixels = datamodule.decode_for_test(Path(path).read_bytes())
    assert torch.equal(pixels, datamodule.datasets["test"][3][0])  # (10, 3, 64, 64) uint8
    batch = pixels.unsqueeze(0)
    expected = datamodule.device_augment(batch, train=False)
    assert torch.equal(datamodule.network_input(batch, "cpu"), expected)
    assert expected.dtype == torch.float32 and expected.shape == (1, 10, 3, 64, 64)
    view, row = datamodule.item_views("test")[3]
    assert row == 3 and view.shape == (3, 64, 64) and view.dtype == torch.uint8


def test_the_study_path_scans_each_split_once_through_the_index_cache(
    fake_imagenet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[Path] = []
    scan = FileIndex.scan
    monkeypatch.setattr(FileIndex, "scan", lambda d, c: scans.append(d) or scan(d, c))
    cache = tmp_path / "cache"
    datamodule = ImageNetDataModule(fake_imagenet, input_size=64, index_cache_dir=str(cache))
    names = datamodule.item_names("train")
    assert len(datamodule.item_views("train")) == len(names) == 8
    assert len(datamodule.item_names("val")) == len(datamodule.item_views("val")) == 8
    assert scans == [fake_imagenet / "train", fake_imagenet / "val"]  # once per split
    again = ImageNetDataModule(fake_imagenet, input_size=64, index_cache_dir=str(cache))
    assert again.item_names("train") == names and len(scans) == 2  # from the cache
