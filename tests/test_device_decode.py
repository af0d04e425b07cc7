"""data.decode=gpu on the CPU: the workers ship JPEG bytes, torchcodec's decoder (its CPU path
here, nvJPEG on a GPU) decodes the batch where the batch goes, and the presets and protocols run
there. Checked against data.decode=cpu on a tree of real JPEGs with the files real disks hold:
the same crops, flips and PCA statistics, the same broken-file handling, exact mid-epoch resume,
and a fast_dev_run of the whole command."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from lightning import seed_everything

from classicnets.data.fake import UNDECODABLE, VALID_ODDITIES, make_fake_imagenet
from classicnets.data.folder import SkippedImageWarning
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.presets import TRAIN_PRESETS
from classicnets.run import checks
from classicnets.run.setup import compose_config

pytest.importorskip("torchcodec")
CLASSES = 3
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_imagenet(tmp_path_factory.mktemp("imagenet"), CLASSES, 4, 2, bad_files=True)


def datamodule(root: Path, decode: str, **kwargs: object) -> ImageNetDataModule:
    settings = {"batch_size": 8, "num_workers": 0, "train_preset": "alexnet"} | kwargs
    return ImageNetDataModule(root, decode=decode, **settings)


def batches(dm: ImageNetDataModule, split: str, n: int | None = None) -> list:
    """The split's first ``n`` batches as the device receives them, under seed 0."""
    dm.setup("fit" if split == "train" else "test")
    seed_everything(0, verbose=False)
    loader = dm.train_dataloader() if split == "train" else dm.test_dataloader()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        for batch in loader:
            out.append(dm.transfer_batch_to_device(batch, CPU, 0))
            if n is not None and len(out) == n:
                break
    return out


def level_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference in 0-255 levels."""
    return (a.float() - b.float()).abs().mean().item()


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_each_preset_takes_the_same_crops_and_flips_with_either_decoder(
    root: Path, preset: str
) -> None:
    """The same sample seeds give the same boxes, scales, flips and interpolations; the pixels
    differ by about a level (libjpeg-turbo's fast IDCT and DCT-domain shrinking on the CPU)."""
    (cpu_images, cpu_targets), *_ = batches(datamodule(root, "cpu", train_preset=preset), "train")
    (gpu_images, gpu_targets), *_ = batches(datamodule(root, "gpu", train_preset=preset), "train")
    assert torch.equal(cpu_targets, gpu_targets)
    assert gpu_images.shape == cpu_images.shape and gpu_images.dtype == torch.uint8
    for cpu, gpu in zip(cpu_images, gpu_images, strict=True):
        assert level_difference(cpu, gpu) < 2.5
        # Another crop or a flip would differ by tens of levels on these textured images.
        assert level_difference(cpu, gpu.flip(-1)) > 8


def test_crop_sizes_follow_the_same_distribution_over_an_epoch(root: Path) -> None:
    """GoogLeNet's crops (8-100% of the area, random interpolation) over several epochs: every
    sample agrees with the CPU path, so the histograms of anything about the crops agree."""
    cpu = batches(datamodule(root, "cpu", train_preset="googlenet", batch_size=4), "train")
    gpu = batches(datamodule(root, "gpu", train_preset="googlenet", batch_size=4), "train")
    assert len(cpu) == len(gpu) >= 3
    # A per-image statistic that moves with the crop's size: the spread of its pixel values.
    spread_cpu = torch.cat([x.float().std(dim=(1, 2, 3)) for x, _ in cpu])
    spread_gpu = torch.cat([x.float().std(dim=(1, 2, 3)) for x, _ in gpu])
    assert torch.allclose(spread_cpu, spread_gpu, atol=1.0)
    counts = torch.histc(spread_cpu, bins=5, min=0, max=100)
    assert torch.equal(counts, torch.histc(spread_gpu, bins=5, min=0, max=100))


def test_pca_lighting_has_the_papers_statistics_after_gpu_decoding(root: Path) -> None:
    """AlexNet's lighting runs after either decoder: the per-image RGB offsets (in 0-255 units)
    are eigvec · (α ⊙ eigval) · 255 with α ~ N(0, 0.1), the same draws for the same seed."""
    dm = datamodule(root, "gpu", batch_size=4)
    images, _ = batches(dm, "train", 1)[0]
    images = images[..., :8, :8].contiguous()  # one offset per image: a corner is enough
    dm.trainer = type("T", (), {"training": True})()
    offsets = []
    for seed in range(200):
        torch.manual_seed(seed)
        train = dm.on_after_batch_transfer((images, None), 0)[0]
        plain = dm.device_augment(images, train=False)
        offsets.append((train - plain).mean(dim=(2, 3)))
    shift = torch.cat(offsets)  # (800, 3) RGB offsets
    projected = shift / 255 @ dm.device_augment.eigvec  # back to α ⊙ eigval, per eigenvector
    std = projected.std(dim=0) / dm.device_augment.eigval
    assert std.tolist() == pytest.approx([0.1, 0.1, 0.1], rel=0.1)
    assert projected.mean(dim=0).abs().max() < 0.005


@pytest.mark.parametrize("protocol", ["center_crop", "ten_crop", "vgg_dense"])
def test_test_protocols_give_the_cpu_paths_views(root: Path, protocol: str) -> None:
    cpu = batches(datamodule(root, "cpu", test_protocol=protocol), "test")
    gpu = batches(datamodule(root, "gpu", test_protocol=protocol), "test")
    assert [len(y) for _, y in cpu] == [len(y) for _, y in gpu]
    for (cpu_x, cpu_y), (gpu_x, gpu_y) in zip(cpu, gpu, strict=True):
        assert torch.equal(cpu_y, gpu_y)
        if isinstance(cpu_x, list):  # whole-image views: groups of stacks per scale
            groups = zip(cpu_x, gpu_x, strict=True)
            pairs = [pair for ga, gb in groups for pair in zip(ga, gb, strict=True)]
        else:
            pairs = [(cpu_x, gpu_x)]
        for a, b in pairs:
            assert a.shape == b.shape
            assert a.numel() == 0 or level_difference(a, b) < 1.0  # the accurate IDCT on both


def test_broken_files_are_dropped_in_evaluation_and_replaced_in_training(root: Path) -> None:
    """A truncated JPEG passes the worker (its header reads) and fails the device decoder: the
    CPU dataset reads it again, flags it, and drops it (evaluation) or stands in another image of
    its class (training), as data.decode=cpu does; CMYK and PNG files are decoded in the worker."""
    dm = datamodule(root, "gpu")
    evaluated = batches(dm, "test")
    targets = torch.cat([y for _, y in evaluated])
    assert len(targets) == CLASSES * 2 + len(VALID_ODDITIES)
    assert {Path(p).name for p in dm.skipped_files()} == set(UNDECODABLE)
    dm = datamodule(root, "gpu", batch_size=len(UNDECODABLE))
    dm.setup("fit")
    train = dm.datasets["train"]
    broken = [i for i in range(len(train)) if Path(train.index.path(i)).name in UNDECODABLE]
    loader = dm.train_dataloader()
    batch = loader.collate_fn([loader.dataset[(i, 7)] for i in broken])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        images, targets = dm.transfer_batch_to_device(batch, CPU, 0)
    assert images.shape == (len(broken), 3, 224, 224) and targets.tolist() == [0] * len(broken)
    assert train.num_skipped == len(UNDECODABLE)


def test_a_resumed_loader_continues_with_the_same_batches(root: Path) -> None:
    dm = datamodule(root, "gpu", batch_size=2, num_workers=1)
    dm.setup("fit")
    seed_everything(0, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        loader = dm.train_dataloader()
        iterator = iter(loader)
        next(iterator)
        state = loader.state_dict()
        expected = [dm.transfer_batch_to_device(b, CPU, 0)[0] for b in iterator]
        resumed = dm.train_dataloader()
        resumed.load_state_dict(state)
        got = [dm.transfer_batch_to_device(b, CPU, 0)[0] for b in resumed]
    assert len(got) == len(expected) >= 2
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_gpu_decoding_leaves_the_main_process_generator_alone(root: Path) -> None:
    dm = datamodule(root, "gpu")
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        batch = next(iter(dm.train_dataloader()))
        torch.manual_seed(5)
        before = torch.get_rng_state()
        dm.transfer_batch_to_device(batch, CPU, 0)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow
def test_fast_dev_run_with_data_decode_gpu(root: Path, tmp_path: Path, train_main) -> None:
    overrides = [
        "model=alexnet",
        "debug=fast_dev_run",
        f"data.root={root}",
        "data.decode=gpu",
        "data.batch_size=2",
        "data.num_workers=1",
        "data.test_protocol=ten_crop",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    assert cfg.data.decode == "gpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        train_main(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test/ten_crop/acc_top1"] <= 1.0
    assert metrics["val/loss"] == metrics["val/loss"]  # finite, not NaN


def test_decode_must_be_cpu_or_gpu_and_gpu_needs_torchcodec(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(checks.ConfigValueError, match=r"data\.decode='nvjpeg'"):
        datamodule(root, "nvjpeg")
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    with pytest.raises(checks.ConfigValueError, match="pip install 'torchcodec"):
        datamodule(root, "gpu")
    datamodule(root, "cpu")  # the default needs no torchcodec


def test_shards_refuse_gpu_decoding(tmp_path: Path) -> None:
    from classicnets.data.shards import ShardsDataModule

    with pytest.raises(checks.ConfigValueError, match=r"use data\.decode=cpu"):
        ShardsDataModule(str(tmp_path), decode="gpu")
