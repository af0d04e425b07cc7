"""A small ImageNet-layout tree of real JPEG files, for tests, demos and benchmarks.

Images vary in size around ImageNet's typical 500×375 (landscape and portrait), hold a learnable
class signal (a tint and a grating whose orientation depends on the class) over smooth random
texture and sensor-like noise, and are saved at quality 90 with 4:2:0 chroma, like most ImageNet
photographs. ``bad_files=True`` adds what real disks hold: CMYK, greyscale and PNG-in-.JPEG
images (valid), truncated, zero-byte and garbage .JPEG files (undecodable), stray non-image files
and an empty class folder.
"""

from __future__ import annotations

import colorsys
import io
from pathlib import Path

import numpy as np
from PIL import Image

# The valid oddities and the undecodable files that bad_files=True writes into class 0.
VALID_ODDITIES = ("cmyk.JPEG", "greyscale.JPEG", "png_named.JPEG")
UNDECODABLE = ("truncated.JPEG", "zero_bytes.JPEG", "garbage.JPEG")


def wnid(i: int) -> str:
    """Fake WordNet ids, sorted like their class numbers; gaps leave room for the empty class."""
    return f"n{1000 + 10 * i:08d}"


EMPTY_CLASS = f"n{1005:08d}"  # sorts between class 0 and class 1: a skipped class would shift 1+


def fake_image(
    label: int, num_classes: int, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """An RGB uint8 (height, width, 3) image carrying its class in tint and grating angle."""
    # Smooth texture: a coarse random grid, upsampled.
    coarse = rng.integers(0, 256, (height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    angle = np.pi * label / num_classes
    period = 12 + 4 * (label % 3)
    # sin(a·x + b·y) from two outer products of 1-D waves: cheap for a whole image.
    ax = np.arange(width, dtype=np.float32) * (2 * np.pi * np.cos(angle) / period)
    by = np.arange(height, dtype=np.float32) * (2 * np.pi * np.sin(angle) / period)
    grating = np.outer(np.cos(by), np.sin(ax)) + np.outer(np.sin(by), np.cos(ax))
    tint = np.array(colorsys.hsv_to_rgb(label / num_classes, 0.8, 1.0), dtype=np.float32) * 120
    signal = rng.standard_normal((height, width), dtype=np.float32)  # sensor-like noise, σ = 10
    signal *= 10
    signal += grating * 40
    image = texture.astype(np.float32)
    image *= 0.5
    image += tint
    image += signal[..., None]
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _jpeg(array: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    image = image.convert(mode) if mode != "RGB" else image
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def make_fake_imagenet(
    root: str | Path,
    num_classes: int = 10,
    train_per_class: int = 10,
    val_per_class: int = 4,
    seed: int = 0,
    bad_files: bool = False,
    size: tuple[int, int] = (500, 375),
) -> Path:
    """Write ``root/{train,val}/<wnid>/*.JPEG`` and ``root/synsets.txt``; returns ``root``.

    Sizes vary by ±20% around ``size`` (width, height), a quarter of the images portrait. With
    ``bad_files`` the class folders number ``num_classes + 1`` (the empty one sorts second).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = [f"{wnid(i)} fake class {i}" for i in range(num_classes)]
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label in range(num_classes):
            folder = root / split / wnid(label)
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(per_class):
                w, h = (int(s * rng.uniform(0.8, 1.2)) for s in size)
                if rng.random() < 0.25:
                    w, h = h, w
                image = fake_image(label, num_classes, w, h, rng)
                (folder / f"{wnid(label)}_{j}.JPEG").write_bytes(_jpeg(image))
        if bad_files:
            _write_bad_files(root / split, num_classes, rng)
    if bad_files:
        names.append(f"{EMPTY_CLASS} empty class")
    (root / "synsets.txt").write_text("\n".join(sorted(names)) + "\n")
    return root


def _write_bad_files(split_dir: Path, num_classes: int, rng: np.random.Generator) -> None:
    folder = split_dir / wnid(0)
    image = fake_image(0, num_classes, 400, 300, rng)
    (folder / "cmyk.JPEG").write_bytes(_jpeg(image, "CMYK"))
    (folder / "greyscale.JPEG").write_bytes(_jpeg(image, "L"))
    (folder / "png_named.JPEG").write_bytes(_jpeg(image, fmt="PNG"))
    jpeg = _jpeg(image)
    (folder / "truncated.JPEG").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "zero_bytes.JPEG").write_bytes(b"")
    (folder / "garbage.JPEG").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (folder / "README.txt").write_text("not an image\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (split_dir / EMPTY_CLASS).mkdir(exist_ok=True)
