"""The cached file index: written atomically on the first scan, reused while the tree is unchanged,
rebuilt when a class folder changes, and never trusted when unreadable."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from classicnets.data import index_cache
from classicnets.data.folder import FileIndex
from classicnets.data.index_cache import cache_file, cached_scan
from classicnets.run.setup import compose_config
from run_helpers import load_script

CLASSES = ("n001", "n002", "n003")


def empty_tree(root: Path, per_class: int = 5) -> Path:
    """``root/train/<class>/*.JPEG`` of empty files (the index holds names only), folder times set
    in the past so that any later change moves them."""
    train = root / "train"
    for c in CLASSES:
        (train / c).mkdir(parents=True)
        for j in range(per_class):
            (train / c / f"{c}_{j}.JPEG").touch()
        os.utime(train / c, ns=(10**18, 10**18))
    return train


def paths(index: FileIndex) -> list[tuple[str, int]]:
    return [(index.path(i), int(index.targets[i])) for i in range(len(index))]


def test_the_first_scan_writes_the_cache_beside_the_data_and_the_next_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = empty_tree(tmp_path)
    scanned = cached_scan(train, CLASSES)
    cached = tmp_path / ".classicnets-index"
    assert [p.name for p in cached.iterdir()] == [cache_file(train).name]  # no temporary left
    assert len(scanned) == 15

    def no_scan(*args: object) -> FileIndex:
        raise AssertionError("scanned although the tree is unchanged")

    monkeypatch.setattr(FileIndex, "scan", no_scan)
    loaded = cached_scan(train, CLASSES)
    assert paths(loaded) == paths(scanned)
    assert loaded.names.dtype == np.uint8 and loaded.offsets.dtype == np.int64


def test_a_changed_class_folder_or_class_order_rescans(tmp_path: Path) -> None:
    train = empty_tree(tmp_path)
    cached_scan(train, CLASSES)
    (train / "n002" / "new.JPEG").touch()
    (train / "n003" / "n003_0.JPEG").unlink()
    index = cached_scan(train, CLASSES)
    assert np.bincount(index.targets).tolist() == [5, 6, 4]
    assert str(train / "n002" / "new.JPEG") in {p for p, _ in paths(index)}
    # Another class order (another training tree's classes) is another index, not a stale one.
    reordered = cached_scan(train, ("n003", "n001"))
    assert np.bincount(reordered.targets).tolist() == [4, 5]
    assert cached_scan(train, CLASSES).class_counts().tolist() == [5, 6, 4]


def test_an_unreadable_cache_is_rescanned_and_replaced(tmp_path: Path) -> None:
    train = empty_tree(tmp_path)
    path = cache_file(train)
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 truncated")
    assert len(cached_scan(train, CLASSES)) == 15
    assert len(index_cache.load(path, index_cache.tree_key(train, CLASSES), train, CLASSES)) == 15


def test_read_only_data_caches_in_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = empty_tree(tmp_path / "data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    (tmp_path / "data" / ".classicnets-index").write_text("a file where the folder would go")
    assert len(cached_scan(train, CLASSES)) == 15
    assert cache_file(train, tmp_path / "home_cache" / "classicnets").is_file()


def test_the_datamodule_caches_each_split_once(tmp_path: Path) -> None:
    import hydra

    from classicnets.data.fake import make_fake_imagenet

    # A tree of its own: the session's shared tree has its index cached beside it by other tests.
    fake_imagenet = make_fake_imagenet(tmp_path / "imagenet", 4, 2, 2, seed=0)

    cfg = compose_config(
        "train",
        [
            "model=resnet18",
            f"data.root={fake_imagenet}",
            f"data.index_cache_dir={tmp_path / 'cache'}",
        ],
        tmp_path / "run",
    )
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    # train and val (test shares val's index): two files, and nothing written beside the data.
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert not (fake_imagenet / ".classicnets-index").exists()
    again = hydra.utils.instantiate(cfg.data)
    again.setup("fit")
    assert paths(again.datasets["val"].index) == paths(datamodule.datasets["val"].index)


def test_bench_index_times_a_generated_tree(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_script("bench_index")
    bench.main(["--classes", "3", "--per-class", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "12 files in 3 classes" in out and "ratio scan / cached load" in out
