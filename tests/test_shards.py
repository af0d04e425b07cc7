"""Streaming shards (data=imagenet_shards): make_shards keeps the files' bytes, labels and class
order; training streams them and resumes mid-epoch where it stopped; evaluation counts every image
once under DDP; a whole run trains, evaluates and resumes from its checkpoint."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from classicnets.data.common import DatasetNotFoundError
from classicnets.data.fake import UNDECODABLE, make_fake_imagenet
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.shards import ShardsDataModule
from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from run_helpers import load_script, signal_at, train

pytestmark = pytest.mark.filterwarnings("ignore::classicnets.data.folder.SkippedImageWarning")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes of real JPEGs (5 train, 3 val each) with CMYK, greyscale, PNG, truncated, empty
    and garbage files in class 0, and an empty class folder."""
    return make_fake_imagenet(tmp_path_factory.mktemp("tree"), 4, 5, 3, seed=0, bad_files=True)


@pytest.fixture(scope="module")
def shards(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    load_script("make_shards").main(["--root", str(tree), "--out", str(out), "--workers", "1"])
    return out


def datamodule(shards: Path, **kwargs: object) -> ShardsDataModule:
    settings = {"batch_size": 4, "input_size": 32, "eval_resize": 36, "num_workers": 0}
    return ShardsDataModule(str(shards), **{**settings, **kwargs})  # type: ignore[arg-type]


def test_make_shards_keeps_bytes_labels_and_the_class_order(tree: Path, shards: Path) -> None:
    folders = ImageNetDataModule(tree)
    metadata = json.loads((shards / "dataset.json").read_text())
    assert metadata["classes"] == folders.classes  # the empty class keeps its index too
    assert metadata["class_names"] == folders.class_names
    for split, per_class in (("train", 5), ("val", 3)):
        items = list(StreamingDataset(str(shards / split)))
        # Every image file; of the undecodable ones only the truncated file has a valid header.
        expected = 4 * per_class + 3 + 1
        assert len(items) == metadata["splits"][split] == expected
        for item in items:
            path = tree / split / bytes(item["name"]).decode()
            assert bytes(item["image"]) == path.read_bytes()
            assert item["label"] == folders.classes.index(path.parent.name)
        names = {Path(bytes(item["name"]).decode()).name for item in items}
        assert names.isdisjoint(set(UNDECODABLE) - {"truncated.JPEG"})
    # Training items are written mixed (a chunk holds several classes), not class by class.
    labels = [item["label"] for item in StreamingDataset(str(shards / "train"))]
    assert labels != sorted(labels)


def test_missing_shards_say_how_to_write_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"scripts/make_shards\.py --root DIR"):
        _ = datamodule(tmp_path).classes


def _eval_batches(dm: ShardsDataModule, world_size: int, rank: int) -> list[tuple]:
    dm.world_size, dm.rank = world_size, rank
    samples = []
    for images, targets in dm.val_dataloader():
        samples += [(int(t), float(x.float().sum())) for x, t in zip(images, targets, strict=True)]
    return samples


def test_ddp_evaluation_counts_every_image_once(shards: Path) -> None:
    dm = datamodule(shards, eval_batch_size=4)
    dm.setup("validate")
    whole = _eval_batches(dm, 1, 0)
    rank0, rank1 = _eval_batches(dm, 2, 0), _eval_batches(dm, 2, 1)
    assert len(whole) == 15  # 16 val items, the truncated one dropped
    assert sorted(rank0 + rank1) == sorted(whole)
    dm.world_size = 2
    lengths = []
    for rank in (0, 1):
        dm.rank = rank
        lengths.append(len(dm.val_dataloader()))
    assert lengths[0] == lengths[1]  # no rank waits in a collective for a batch never run
    assert dm.num_skipped == 1 and "truncated.JPEG" in dm.skipped_files()[0]


def _train_loader(shards: Path):
    dm = datamodule(shards)
    torch.manual_seed(7)  # the shuffle seed, as seed_everything sets it
    dm.transforms["train"] = dm.transforms["val"]  # deterministic pixels, to compare batches
    dm.setup("fit")
    return dm, dm.train_dataloader()


def test_the_train_loader_resumes_mid_epoch_where_it_stopped(shards: Path) -> None:
    _, loader = _train_loader(shards)
    whole = [(x.clone(), y.clone()) for x, y in loader]  # epoch 1, uninterrupted
    assert len(whole) == 6  # 24 items, batch 4 (one truncated file leaves its batch with 3)

    _, first = _train_loader(shards)
    seen = []
    for i, batch in enumerate(first):
        seen.append(batch)
        if i == 1:
            break
    state = first.state_dict()  # what Lightning stores in the checkpoint
    _, resumed = _train_loader(shards)
    resumed.load_state_dict(state)
    seen += list(resumed)
    assert len(seen) == len(whole)
    for (x, y), (x_ref, y_ref) in zip(seen, whole, strict=True):
        assert torch.equal(y, y_ref) and torch.equal(x, x_ref)
    # A shuffled order, the same on every rank: a function of the seed alone.
    labels = np.concatenate([y.numpy() for _, y in whole])
    assert len(set(labels.tolist())) > 1


@pytest.fixture(scope="module")
def clean_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of 4 classes × 5 training images and no broken file: 5 steps of 4 per epoch."""
    tree = make_fake_imagenet(tmp_path_factory.mktemp("clean"), 4, 5, 2, seed=1)
    out = tmp_path_factory.mktemp("clean_shards")
    load_script("make_shards").main(["--root", str(tree), "--out", str(out), "--workers", "1"])
    return out


@pytest.mark.slow
def test_a_run_trains_evaluates_and_resumes_on_shards(
    clean_shards: Path, tmp_path: Path, train_main
) -> None:
    def overrides(name: str, epochs: int) -> list[str]:
        return [
            "model=resnet18",
            "data=imagenet_shards",
            f"data.root={clean_shards}",
            "data.batch_size=4",
            "data.input_size=32",
            "data.eval_resize=36",
            "data.num_workers=0",
            "data.test_protocol=center_crop",
            "trainer.accelerator=cpu",
            "logger=none",
            "callbacks.progress_bar=null",
            "+trainer.enable_progress_bar=false",
            f"trainer.max_epochs={epochs}",
            "+callbacks.order._target_=run_helpers.RecordTargets",
            f"+callbacks.order.path={tmp_path / name}",
        ]

    whole_dir, run_dir = tmp_path / "whole", tmp_path / "stopped"
    train_main(compose_config("train", overrides("whole.jsonl", 2), whole_dir))
    metrics = json.loads((whole_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["val/acc_top1"] <= 1.0
    assert 0.0 <= metrics["test/center_crop/acc_top1"] <= 1.0
    # Stopped by SIGTERM after step 3 of epoch 1's 5 (a subprocess: the signal ends it) ...
    train(
        tmp_path,
        *overrides("stopped.jsonl", 2),
        f"hydra.run.dir={run_dir}",
        *signal_at(2, signal.SIGTERM),
        expect=128 + signal.SIGTERM,
    )
    checkpoint = load_file(run_dir / "checkpoints" / "last.ckpt")
    (loader_state,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert checkpoint["global_step"] == 3 and loader_state["num_samples_yielded"] == 12
    # ... resumed mid-epoch to the end of epoch 1, then at that boundary for epoch 2: the same
    # batches as the run never stopped, none repeated, none missed.
    train_main(compose_config("train", overrides("stopped.jsonl", 1), run_dir))
    assert load_file(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 5
    train_main(compose_config("train", overrides("stopped.jsonl", 2), run_dir))
    assert load_file(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 10
    whole = (tmp_path / "whole.jsonl").read_text().splitlines()
    assert (tmp_path / "stopped.jsonl").read_text().splitlines() == whole
    assert len(whole) == 10 and whole[:5] != whole[5:]  # epoch 2 is shuffled anew


def test_a_broken_training_image_is_replaced_by_one_of_its_class(shards: Path) -> None:
    dm = datamodule(shards)
    dm.setup("fit")
    train = dm.datasets["train"]
    raw = StreamingDataset(str(shards / "train"))
    names = [bytes(item["name"]).decode() for item in raw]
    broken = next(i for i, n in enumerate(names) if n.endswith("truncated.JPEG"))
    good = next(i for i, n in enumerate(names) if n.startswith(f"{names[broken].split('/')[0]}/n"))
    assert train[broken] is None  # no image of the class read yet: dropped
    image, label = train[good]
    stand_in, stand_in_label = train[broken]
    assert stand_in_label == label == raw[broken]["label"] and stand_in.shape == image.shape
    assert dm.num_skipped == 1 and "truncated.JPEG" in dm.skipped_files()[0]


def test_make_shards_of_a_missing_tree_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_shards = load_script("make_shards")
    with pytest.raises(SystemExit) as exit_info:
        make_shards.main(["--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "prepare_imagenet.py" in err[0]
