"""ImageNetDataModule on a generated tree of real JPEGs with the files real disks hold: the class
mapping, missing data, broken files, batches through worker processes, the worker memory of the
index, DDP evaluation shards, and a fast_dev_run of AlexNet with 10-crop evaluation."""

from __future__ import annotations

import logging
import warnings
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning import seed_everything
from torch.utils.data import DataLoader, Dataset

from classicnets.data.common import DatasetNotFoundError
from classicnets.data.fake import EMPTY_CLASS, UNDECODABLE, VALID_ODDITIES, make_fake_imagenet, wnid
from classicnets.data.folder import FileIndex, SkippedImageWarning
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.transforms import MEAN_RGB, PIXEL_SCALES
from run_helpers import load_script

CLASSES = 3  # real classes; the tree has one more, empty, folder between class 0 and class 1


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_imagenet(tmp_path_factory.mktemp("imagenet"), CLASSES, 4, 2, bad_files=True)


def datamodule(root: Path, **kwargs: object) -> ImageNetDataModule:
    settings = {"batch_size": 4, "num_workers": 0, "train_preset": "alexnet"} | kwargs
    return ImageNetDataModule(root, **settings)


def test_classes_come_from_the_train_folders(root: Path) -> None:
    dm = datamodule(root)
    assert dm.classes == [wnid(0), EMPTY_CLASS, wnid(1), wnid(2)]
    assert dm.num_classes == CLASSES + 1 and dm.in_channels == 3
    assert dm.classes.index(wnid(1)) == 2  # the sorted folder order is the label order
    assert dm.class_names[:2] == ["fake class 0", "empty class"]  # from synsets.txt
    assert dm.val_protocol == "center_crop" and dm.test_protocol == "center_crop"


def test_targets_never_shift(root: Path) -> None:
    dm = datamodule(root)
    dm.setup("fit")
    for key in ("train", "val"):
        index = dm.datasets[key].index
        for i in range(len(index)):
            folder = Path(index.path(i)).parent.name
            assert dm.classes[index.targets[i]] == folder
    # Only image files are indexed: the stray README.txt and .DS_Store are not.
    train = dm.datasets["train"].index
    names = [Path(train.path(i)).name for i in range(len(train))]
    assert "README.txt" not in names and ".DS_Store" not in names
    assert set(VALID_ODDITIES + UNDECODABLE) <= set(names)


def test_missing_or_empty_root_fails_at_once_with_instructions(tmp_path: Path) -> None:
    for problem in ("missing", "no classes", "empty classes"):
        root = tmp_path / problem.replace(" ", "_")
        if problem != "missing":
            (root / "train").mkdir(parents=True)
        if problem == "empty classes":
            (root / "train" / "n01440764").mkdir()
        with pytest.raises(DatasetNotFoundError) as error:
            _ = ImageNetDataModule(root).num_classes
        message = str(error.value)
        assert f"{root}/train/<class>/*.JPEG" in message
        assert "scripts/prepare_imagenet.py" in message and "data.root=" in message
    # Training images but no validation folder: setup says which folder is missing.
    (tmp_path / "no_val" / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "no_val" / "train" / "n01440764" / "a.JPEG").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path}/no_val/val holds no images"):
        ImageNetDataModule(tmp_path / "no_val").setup("fit")


def test_class_mapping_is_saved_with_the_checkpoint(root: Path, tmp_path: Path) -> None:
    state = datamodule(root).state_dict()
    assert state["classes"][1] == EMPTY_CLASS and state["class_names"][1] == "empty class"
    # Without the data (evaluating a checkpoint elsewhere) the checkpoint's mapping is used.
    elsewhere = datamodule(tmp_path / "absent")
    elsewhere.load_state_dict(state)
    assert elsewhere.classes == state["classes"] and elsewhere.num_classes == CLASSES + 1
    # Against different folders the indices would mean other classes: refuse.
    with pytest.raises(ValueError, match="class"):
        datamodule(root).load_state_dict({**state, "classes": state["classes"][::-1]})


def test_hydra_config_builds_the_datamodule(root: Path) -> None:
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["model=alexnet", f"data.root={root}"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, ImageNetDataModule) and dm.num_classes == CLASSES + 1
    assert dm.batch_size == 128 and dm.input_size == 227 and dm.test_protocol == "ten_crop"
    assert dm.device_augment.photometric == "lighting"  # the alexnet preset's PCA lighting
    assert dm.device_augment.eigval.tolist() == pytest.approx([0.2175, 0.0188, 0.0045])


def test_undecodable_files_are_skipped_and_counted(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dm = datamodule(root)
    dm.setup("validate")
    with pytest.warns(SkippedImageWarning) as caught:
        batches = list(dm.val_dataloader())
    named = {Path(str(w.message).split(": ")[0].split()[-1]).name for w in caught}
    assert named == set(UNDECODABLE)
    images = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    # Every decodable image counted once: 2 per real class, plus the 3 odd-but-valid files.
    assert len(targets) == CLASSES * 2 + len(VALID_ODDITIES)
    assert images.shape[1:] == (3, 224, 224) and images.dtype == torch.uint8
    assert (targets == 0).sum() == 2 + len(VALID_ODDITIES)
    assert dm.num_skipped == len(UNDECODABLE)
    assert {Path(p).name for p in dm.skipped_files()} == set(UNDECODABLE)
    # Testing reads the same folder: it knows these files already and counts them once.
    dm.setup("test")
    assert dm.datasets["test"].num_skipped == dm.num_skipped == len(UNDECODABLE)
    # The run's log counts them: at the next batch, and by name when the stage ends.
    with caplog.at_level(logging.WARNING, logger="classicnets.data.imagenet"):
        dm.on_after_batch_transfer(batches[0], 0)
        dm.teardown("validate")
    assert "3 undecodable image files skipped so far" in caplog.text
    assert all(name in caplog.text for name in UNDECODABLE)


def test_training_replaces_broken_files_with_the_same_class(root: Path) -> None:
    dm = datamodule(root)
    dm.setup("fit")
    train = dm.datasets["train"]
    broken = [i for i in range(len(train)) if Path(train.index.path(i)).name in UNDECODABLE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        for i in broken * 2:  # a known-bad file is not decoded (or reported) again
            image, target = train[i]
            assert image.shape == (3, 224, 224) and target == 0
    assert train.num_skipped == len(UNDECODABLE)


def test_batches_through_worker_processes(root: Path) -> None:
    dm = datamodule(root, num_workers=1, test_protocol="ten_crop", batch_size=6)
    dm.setup("fit")
    dm.setup("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        images, targets = next(iter(dm.train_dataloader()))
        tests = list(dm.test_dataloader())
    assert images.shape == (6, 3, 224, 224) and images.dtype == torch.uint8
    assert targets.dtype == torch.int64 and targets.min() >= 0 and targets.max() < dm.num_classes
    # 10-crop batches: batch_size // 10 rounds up to one image per batch.
    assert all(x.shape[1:] == (10, 3, 224, 224) for x, _ in tests)
    assert sum(len(y) for _, y in tests) == CLASSES * 2 + len(VALID_ODDITIES)
    # The workers' finding that 3 files are broken reached this process.
    assert dm.datasets["test"].num_skipped == len(UNDECODABLE)


def test_training_batches_repeat_under_a_seed(root: Path) -> None:
    batches = []
    for _ in range(2):  # two runs with the same seed
        dm = datamodule(root, num_workers=1, batch_size=3)
        dm.setup("fit")
        seed_everything(0, workers=True, verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedImageWarning)
            batches.append(next(iter(dm.train_dataloader())))
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])


def test_on_after_batch_transfer(root: Path) -> None:
    dm = datamodule(root, channels_last=True)
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    train = dm.on_after_batch_transfer(batch, 0)[0]
    dm.trainer = SimpleNamespace(training=False)
    evaluated = dm.on_after_batch_transfer(batch, 0)[0]
    assert train.dtype == torch.float32 and train.is_contiguous(memory_format=torch.channels_last)
    # AlexNet's scale: raw 0-255 pixels minus the mean RGB, so pixel + mean is the uint8 value.
    restored = evaluated + 255 * torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    assert torch.allclose(restored, batch[0].float(), atol=1e-3)
    # Lighting shifts each image by one RGB offset: the difference is constant over pixels.
    shift = train - evaluated
    per_image = shift.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(shift, per_image.expand_as(shift), atol=1e-5)
    assert per_image.abs().max() > 1e-3


def test_ddp_shards_count_each_validation_image_once(root: Path) -> None:
    seen = []
    for rank in range(3):
        dm = datamodule(root, eval_batch_size=3)
        dm.setup("validate")
        dm.world_size, dm.rank = 3, rank
        loader = dm.val_dataloader()
        seen += [i for batch in loader.batch_sampler for i in batch]
    assert sorted(seen) == list(range(len(dm.datasets["val"])))


def _private_dirty_kb() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    raise RuntimeError("no Private_Dirty")


class _ListIndex:
    """The usual index: a list of (path, target) tuples."""

    def __init__(self, index: FileIndex) -> None:
        self.items = [(index.path(i), int(index.targets[i])) for i in range(len(index))]

    def path(self, i: int) -> str:
        return self.items[i][0]


class _ReadAll(Dataset):
    """One sample: how much private memory a worker gains by reading every index entry."""

    def __init__(self, index: FileIndex | _ListIndex, length: int) -> None:
        self.index, self.length = index, length

    def __len__(self) -> int:
        return 1

    def __getitem__(self, _: int) -> int:
        before = _private_dirty_kb()
        for i in range(self.length):
            self.index.path(i)
        return _private_dirty_kb() - before


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux /proc only")
def test_worker_memory_stays_flat_with_the_compact_index() -> None:
    n = 200_000
    names = b"".join(f"n01440764_{i}.JPEG".encode() for i in range(n))
    lengths = np.array([len(f"n01440764_{i}.JPEG") for i in range(n)])
    compact = FileIndex(
        "/data/train",
        ("n01440764",),
        np.frombuffer(names, dtype=np.uint8).copy(),
        np.concatenate([[0], np.cumsum(lengths)]),
        np.zeros(n, dtype=np.int32),
    )
    grown = {}
    for name, index in (("compact", compact), ("list", _ListIndex(compact))):
        loader = DataLoader(_ReadAll(index, n), batch_size=None, num_workers=1)
        grown[name] = next(iter(loader)) / 1024  # MiB
    # Reading 200k list entries copies their pages into the worker (tens of MiB, growing with
    # the dataset); the numpy index stays shared.
    assert grown["list"] > 10, grown
    assert grown["compact"] < 2, grown


@pytest.mark.slow
def test_fast_dev_run_alexnet_with_ten_crop_evaluation(root: Path, tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning")
    module = pytest.importorskip("classicnets.training.module")
    dm = datamodule(
        root, batch_size=2, input_size=227, val_protocol="ten_crop", test_protocol="ten_crop"
    )
    model = module.ClassificationModule(
        net={"name": "alexnet"},
        num_classes=dm.num_classes,
        in_channels=dm.in_channels,
        optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9),
    )
    trainer = lightning.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        trainer.fit(model, datamodule=dm)
        metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert {"test/ten_crop/acc_top1", "test/ten_crop/loss"} <= set(metrics)
    assert 0.0 <= metrics["test/ten_crop/acc_top1"] <= 1.0
    assert np.isfinite(metrics["test/ten_crop/loss"])


@pytest.mark.parametrize(
    ("preset", "scale"),
    [("alexnet", "mean_subtracted"), ("zfnet", "mean_subtracted"), ("vgg", "mean_subtracted"),
     ("googlenet", "mean_subtracted"), ("resnet", "mean_subtracted"), ("fb_resnet", "torchvision"),
     ("mobilenet", "inception"), ("shufflenet", "bgr_255"), ("torchvision", "torchvision")],
)  # fmt: skip
def test_each_preset_feeds_its_papers_pixel_scale(root: Path, preset: str, scale: str) -> None:
    """data.train_preset=torchvision brings torchvision's normalisation with it; an explicit
    data.normalization wins over the preset's."""
    assert datamodule(root, train_preset=preset).pixel_scale == PIXEL_SCALES[scale]
    chosen = datamodule(root, train_preset=preset, normalization="torchvision")
    assert chosen.pixel_scale == PIXEL_SCALES["torchvision"]


def test_mean_image_from_compute_pca(tmp_path: Path) -> None:
    """compute_pca --out stores the per-pixel mean of the images' centre 256² squares; the data
    module subtracts its centre crop instead of the per-channel mean."""
    from PIL import Image

    compute_pca = load_script("compute_pca")
    left, right = np.zeros((300, 400, 3), np.uint8), np.zeros((300, 400, 3), np.uint8)
    left[:, :200], right[:, 200:] = 200, 100  # after the resize, one half bright in each
    for name, pixels in (("a", left), ("b", right)):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "train" / name / "0.png")
    stats_file = tmp_path / "pixels.pt"
    compute_pca.main([str(tmp_path), "--out", str(stats_file)])
    dm = ImageNetDataModule(tmp_path, train_preset="alexnet", mean_image=stats_file)
    mean_image = dm.device_augment.mean_image
    assert mean_image.shape == (3, 256, 256)
    # Shorter side 300 → 256: 341 wide, centre 256 from x = 42; the halves meet at x = 128.
    assert mean_image[0, 128, 10] == pytest.approx(100 / 255, abs=2e-3)  # (200 + 0) / 2
    assert mean_image[0, 128, 250] == pytest.approx(50 / 255, abs=2e-3)  # (0 + 100) / 2
    images = torch.full((1, 3, 224, 224), 120, dtype=torch.uint8)
    out = dm.device_augment(images, train=False)
    # The centre 224 of the mean image, on the 0-255 scale: 120 − 100 left, 120 − 50 right.
    assert out[0, 0, 100, 5].item() == pytest.approx(20, abs=0.6)
    assert out[0, 0, 100, 220].item() == pytest.approx(70, abs=0.6)
    with pytest.raises(FileNotFoundError, match="compute_pca"):
        ImageNetDataModule(tmp_path, mean_image=tmp_path / "missing.pt")
