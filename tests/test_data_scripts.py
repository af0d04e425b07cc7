"""The data scripts: prepare_imagenet on a miniature set of the official archives, compute_pca
against a hand computation, make_fake_imagenet's command line, and a tiny bench_data run."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classicnets.data.imagenet import ImageNetDataModule
from run_helpers import load_script

WNIDS = ("n01440764", "n01443537", "n01484850")  # three leaf synsets, ILSVRC2012_ID 1, 2, 3
NAMES = ("tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark")
VAL_LABELS = (3, 1, 2, 1, 3)  # ILSVRC2012_ID of validation images 1..5


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_archives(folder: Path) -> Path:
    """Miniature ILSVRC2012 archives: devkit (meta.mat + ground truth), train tar of per-class
    tars, flat val tar. Returns the devkit path."""
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children"]
    fields += ["wordnet_height", "num_train_images"]
    synsets = np.zeros((4, 1), dtype=[(f, object) for f in fields])
    for i, (wnid, words) in enumerate(zip(WNIDS, NAMES, strict=True)):
        synsets[i, 0] = (i + 1, wnid, words, "a fish", 0, np.zeros((1, 0)), 0, 2)
    # A non-leaf synset, which is not a class: torchvision's parser must drop it.
    synsets[3, 0] = (4, "n02512053", "fish", "any fish", 2, np.array([[1, 2]]), 1, 0)
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    truth = "".join(f"{label}\n" for label in VAL_LABELS).encode()
    devkit = folder / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(devkit, "w:gz") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as outer:
        for c, wnid in enumerate(WNIDS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for j in range(2):
                    _add(tar, f"{wnid}_{j}.JPEG", _jpeg(10 * c + j))
            _add(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as tar:
        for k in range(len(VAL_LABELS), 0, -1):  # order in the tar must not matter
            _add(tar, f"ILSVRC2012_val_{k:08d}.JPEG", _jpeg(100 + k))
    return devkit


def test_prepare_imagenet_from_miniature_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("scipy")
    import torchvision.datasets.imagenet as tv_imagenet

    archives = tmp_path / "archives"
    archives.mkdir()
    devkit = _write_archives(archives)
    # torchvision checks the real devkit's md5; let it accept the miniature one.
    md5 = hashlib.md5(devkit.read_bytes()).hexdigest()
    monkeypatch.setitem(tv_imagenet.ARCHIVE_META, "devkit", (devkit.name, md5))
    out = tmp_path / "imagenet"
    prepare = load_script("prepare_imagenet")
    prepare.main(["--archives", str(archives), "--out", str(out)])
    assert "wrote 6 training and 5 validation images" in capsys.readouterr().out

    for wnid in WNIDS:
        assert sorted(p.name for p in (out / "train" / wnid).iterdir()) == [
            f"{wnid}_0.JPEG",
            f"{wnid}_1.JPEG",
        ]
    for k, label in enumerate(VAL_LABELS, 1):
        assert (out / "val" / WNIDS[label - 1] / f"ILSVRC2012_val_{k:08d}.JPEG").is_file()
    dm = ImageNetDataModule(out, batch_size=2, num_workers=0)
    assert dm.classes == list(WNIDS)
    assert dm.class_names == list(NAMES)
    # A second run finds everything in place and rewrites nothing.
    before = (out / "val" / WNIDS[0] / "ILSVRC2012_val_00000002.JPEG").stat().st_mtime_ns
    prepare.main(["--archives", str(archives), "--out", str(out)])
    after = (out / "val" / WNIDS[0] / "ILSVRC2012_val_00000002.JPEG").stat().st_mtime_ns
    assert before == after


def test_prepare_imagenet_names_missing_archives(tmp_path: Path) -> None:
    prepare = load_script("prepare_imagenet")
    with pytest.raises(SystemExit):
        prepare.main(["--archives", str(tmp_path), "--out", str(tmp_path / "out")])


def test_compute_pca_matches_a_hand_computation(tmp_path: Path) -> None:
    """Lossless PNGs with correlated colours: the script's statistics equal numpy's."""
    rng = np.random.default_rng(0)
    mixing = np.array([[60.0, 0, 0], [50, 20, 0], [40, -10, 15]])
    pixels = []
    for c, wnid in enumerate(("a", "b")):
        (tmp_path / "train" / wnid).mkdir(parents=True)
        for j in range(3):
            values = 128 + rng.standard_normal((24 * 32, 3)) @ mixing.T
            image = np.clip(values, 0, 255).round().astype(np.uint8).reshape(24, 32, 3)
            Image.fromarray(image).save(tmp_path / "train" / wnid / f"{c}_{j}.png")
            pixels.append(image.reshape(-1, 3) / 255)
    x = np.concatenate(pixels)
    covariance = np.cov(x.T, bias=True)
    stats = load_script("compute_pca").pixel_statistics(tmp_path)

    assert np.allclose(stats["mean"], x.mean(0), atol=1e-9)
    assert np.allclose(stats["std"], x.std(0), atol=1e-9)
    eigval, eigvec = np.array(stats["pca_eigval"]), np.array(stats["pca_eigvec"])
    assert np.all(np.diff(eigval) < 0)  # largest first
    assert np.allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-9)  # orthonormal columns
    assert np.allclose(covariance @ eigvec, eigvec * eigval, atol=1e-9)  # columns: eigenvectors
    assert np.allclose(eigval, np.linalg.eigvalsh(covariance)[::-1], atol=1e-9)


def test_make_fake_imagenet_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("make_fake_imagenet")
    script.main([str(tmp_path / "fake"), "--classes", "2", "--train", "1", "--val", "1"])
    assert "wrote 4 images" in capsys.readouterr().out
    files = sorted((tmp_path / "fake").rglob("*.JPEG"))
    assert len(files) == 4
    with Image.open(files[0]) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert min(image.size) >= 300 and max(image.size) <= 600  # around 500×375


@pytest.mark.slow
def test_bench_data_prints_both_pipelines(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_script("bench_data")
    threads = torch.get_num_threads()
    try:
        bench.main(["--fake", "8", "--workers", "0", "--batch-size", "4", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "torchvision reference" in out and "ours (uint8 loader)" in out
    ratios = [
        float(line.split(": ")[1].rstrip("×")) for line in out.splitlines() if "ratio" in line
    ]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
