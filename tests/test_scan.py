"""A scan that cannot be fooled: links to folders, FIFOs, file names of any bytes, 16-bit images."""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from classicnets.data.decode import EncodedImage
from classicnets.data.fake import make_fake_imagenet, wnid
from classicnets.data.folder import (
    FileIndex,
    ImageFolderDataset,
    SkippedEntryWarning,
    find_classes,
    printable,
    read_regular_file,
)
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.run.setup import compose_config
from run_helpers import load_entry_point
from study_helpers import imagenet_checkpoint

PER_CLASS = 3


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """3 classes of 3 small training JPEGs (and 1 val image each)."""
    return make_fake_imagenet(tmp_path / "tree", 3, PER_CLASS, 1, size=(64, 48))


def _scan(split: Path) -> FileIndex:
    return FileIndex.scan(split, find_classes(split))


def _scan_within(split: Path, seconds: float = 30) -> FileIndex:
    """The scan, failing (not hanging the suite) if it does not end."""
    result: list[FileIndex] = []
    worker = threading.Thread(target=lambda: result.append(_scan(split)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"the scan of {split} did not end within {seconds} s"
    return result[0]


def test_a_link_to_the_parent_folder_hands_no_class_another_classes_images(tree: Path) -> None:
    class_dir = tree / "train" / wnid(0)
    (class_dir / "up").symlink_to("..")
    with pytest.warns(SkippedEntryWarning, match="left out 1 links to folders") as caught:
        index = _scan_within(tree / "train")
    assert len(caught) == 1  # one warning per scan
    assert index.class_counts().tolist() == [PER_CLASS] * 3


def test_a_class_folder_that_links_to_the_split_or_above_is_no_class(tree: Path) -> None:
    (tree / "train" / "n99999999").symlink_to(tree)
    with pytest.warns(SkippedEntryWarning, match="n99999999"):
        classes = find_classes(tree / "train")
    assert classes == [wnid(i) for i in range(3)]


def test_two_links_that_loop_end_the_scan(tree: Path) -> None:
    class_dir = tree / "train" / wnid(1)
    (class_dir / "up").symlink_to("..")
    (class_dir / "sub").mkdir()
    (class_dir / "sub" / "up").symlink_to("../..")
    with pytest.warns(SkippedEntryWarning, match="left out 2 links"):
        index = _scan_within(tree / "train")
    assert index.class_counts().tolist() == [PER_CLASS] * 3


def test_a_fifo_named_like_a_jpeg_is_never_opened(tree: Path) -> None:
    class_dir = tree / "train" / wnid(2)
    os.mkfifo(class_dir / "x.JPEG")
    with pytest.warns(SkippedEntryWarning, match="x.JPEG"):
        index = _scan_within(tree / "train")
    assert index.class_counts().tolist() == [PER_CLASS] * 3
    # A FIFO that replaces a file after the scan is refused at once, not waited on.
    victim = class_dir / f"{wnid(2)}_0.JPEG"
    victim.unlink()
    os.mkfifo(victim)
    with pytest.raises(OSError, match="not a regular file"):
        read_regular_file(str(victim))


def test_file_and_class_names_of_any_bytes_reach_the_data_and_the_logs(tree: Path) -> None:
    train = tree / "train"
    odd_class = os.fsdecode(os.fsencode(train) + b"/n\xff\xfeodd")
    os.rename(train / wnid(2), odd_class)
    odd_file = os.path.join(odd_class, os.fsdecode(b"caf\xe9.JPEG"))  # Latin-1, not UTF-8
    os.rename(os.path.join(odd_class, f"{wnid(2)}_0.JPEG"), odd_file)
    index = _scan(train)
    assert index.class_counts().tolist() == [PER_CLASS] * 3
    assert odd_file in {index.path(i) for i in range(len(index))}
    dataset = ImageFolderDataset(index, lambda image: image.decode(), replace_bad=False)
    pixels, target = dataset[[index.path(i) for i in range(len(index))].index(odd_file)]
    assert target == 2 and pixels.shape[-1] == 3
    shown = printable(odd_file)
    assert shown.endswith("/n\\xff\\xfeodd/caf\\xe9.JPEG")
    shown.encode()  # valid UTF-8 for logs and CSV files


def test_predict_writes_a_csv_for_names_that_are_not_utf8(tree: Path, tmp_path: Path) -> None:
    for split in ("train", "val"):
        os.rename(tree / split / wnid(2), os.fsdecode(os.fsencode(tree / split) + b"/n\xffodd"))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    source = next((tree / "val" / wnid(0)).iterdir())
    (inputs / os.fsdecode(b"photo\xe9.JPEG")).write_bytes(source.read_bytes())
    ckpt = imagenet_checkpoint(tmp_path / "r18.ckpt", tree)
    predict_main = load_entry_point("predict").main
    overrides = [f"ckpt_path={ckpt}", f"inputs={inputs}", "top_k=3"]
    predict_main(compose_config("predict", overrides, tmp_path / "p"))
    with open(tmp_path / "p" / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert all(row["file"].endswith("photo\\xe9.JPEG") for row in rows)
    assert "n\\xffodd" in {row["folder"] for row in rows}  # top-3 of 3 classes: every class


def _png16(grey: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def test_16_bit_greyscale_images_are_scaled_to_8_bits_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).round().astype(np.uint16)
    want = ramp.astype(np.float64).mean() * 255 / 65535  # 127.5: mid-grey, not white
    png = EncodedImage(_png16(ramp))
    assert Image.open(io.BytesIO(png.data)).mode == "I;16"
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, ramp)
    for image in (png, EncodedImage(buffer.getvalue())):
        pixels = image.decode().numpy()
        assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8
        assert abs(pixels.astype(np.float64).mean() - want) < 0.5
        assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255


def test_16_bit_rgb_keeps_its_high_bytes() -> None:
    ramp = np.linspace(0, 65535, 32 * 16).reshape(16, 32).round().astype(np.uint16)
    rgb = np.stack([ramp, ramp // 2, ramp // 4], axis=-1)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb, photometric="rgb")
    pixels = EncodedImage(buffer.getvalue()).decode().numpy()
    assert np.abs(pixels.astype(np.int64) - (rgb >> 8)).max() <= 1


def test_the_datamodule_finds_images_through_a_linked_class_folder(tree: Path) -> None:
    linked = tree / "train" / wnid(1)
    real = tree / "elsewhere"
    linked.rename(real)
    linked.symlink_to(real)  # a class folder may itself be a link
    dm = ImageNetDataModule(tree, batch_size=2, num_workers=0, input_size=32, eval_resize=36)
    dm.setup("fit")
    assert dm.datasets["train"].index.class_counts().tolist() == [PER_CLASS] * 3
