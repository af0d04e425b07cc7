"""Image files → RGB uint8 pixels: libjpeg-turbo (simplejpeg) for JPEGs, Pillow for the rest.

The training pipeline decodes every image once per epoch, so decoding is the floor of its cost.
Three things keep the rest of a training sample small: the size comes from the JPEG header
before decoding, so a preset can choose its crop first; large JPEGs decode at 1/2, 1/4 or 1/8
scale in the DCT domain (the SIMD-accelerated factors) when the crop leaves enough pixels; only
the crop is resized, by torch's uint8 antialiasing kernels on a channels-last view, never the
whole image.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

JPEG_MAGIC = b"\xff\xd8\xff"
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")

# A box (x0, y0, x1, y1) in source pixels; floats, right/bottom edges exclusive.
Box = tuple[float, float, float, float]


class EncodedImage:
    """The bytes of one image file; its size is read from the header, the pixels on demand.

    Raises (OSError, ValueError, ...) at construction if the bytes are not an image at all.
    """

    __slots__ = ("data", "height", "is_jpeg", "width")

    def __init__(self, data: bytes) -> None:
        self.data = data
        if data[:3] == JPEG_MAGIC:
            try:
                self.height, self.width, _, _ = simplejpeg.decode_jpeg_header(data)
                self.is_jpeg = True
                return
            except ValueError:
                pass  # e.g. an arithmetic-coded JPEG: Pillow may still read it
        with Image.open(io.BytesIO(data)) as image:
            self.width, self.height = image.size
        self.is_jpeg = False

    def decode(self, reduce: int = 1, *, fast: bool = False) -> Tensor:
        """Pixels as an (H, W, 3) uint8 tensor, JPEGs shrunk by ``reduce`` ∈ {1, 2, 4, 8} while
        decoding (other formats come at full size: read the scale off the returned shape).

        ``fast`` trades a little accuracy for ~10% speed (integer IDCT, plain chroma upsampling);
        invisible under training augmentation, so evaluation keeps it off.
        """
        if self.is_jpeg:
            try:
                return torch.from_numpy(self._decode_jpeg(reduce, fast))
            except ValueError:
                pass  # libjpeg-turbo refuses some files Pillow reads (e.g. stray bytes); try it
        with Image.open(io.BytesIO(self.data)) as image:
            if reduce > 1 and image.format == "JPEG":
                image.draft("RGB", (-(-self.width // reduce), -(-self.height // reduce)))
            # CMYK, greyscale, palette and 16-bit files all become 8-bit RGB here.
            return torch.from_numpy(_rgb8(image))

    def _decode_jpeg(self, reduce: int, fast: bool) -> np.ndarray:
        # simplejpeg picks the strongest libjpeg scaling factor that keeps the minimum sizes;
        # for ceil(size / reduce) that is exactly 1 / reduce.
        scaled = {"min_height": -(-self.height // reduce), "min_width": -(-self.width // reduce)}
        return simplejpeg.decode_jpeg(
            self.data,
            colorspace="RGB",
            fastdct=fast,
            fastupsample=fast,
            **(scaled if reduce > 1 else {}),
        )


def _rgb8(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 pixels of any Pillow image. 16-bit greyscale (PNG, TIFF: modes I;16 and
    I) is scaled to 8 bits; Pillow's own conversion clips it, leaving nearly white images. Pillow
    already reduces 16-bit RGB files to their high bytes."""
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.asarray(image, dtype=np.int64)
        if image.mode.startswith("I;16") or (grey.min() >= 0 and grey.max() <= 0xFFFF):
            grey = (np.clip(grey, 0, 0xFFFF) * 255 + 0x7FFF) // 0xFFFF  # rounded, 65535 -> 255
            return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
    return np.array(image.convert("RGB"))


def max_reduction(box_h: float, box_w: float, out_h: int, out_w: int) -> int:
    """The largest DCT reduction (8, 4, 2 or 1) that still leaves the box at least the output size,
    so decoding small never costs resolution that the resize would have kept."""
    for reduce in (8, 4, 2):
        if box_h / reduce >= out_h and box_w / reduce >= out_w:
            return reduce
    return 1


def resize(pixels: Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> Tensor:
    """(H, W, 3) uint8 → (3, h, w) uint8, antialiased when it shrinks (as Pillow does)."""
    # torch's fast uint8 kernels want a dense channels-last batch; a crop of an (H, W, 3) image
    # is a strided view, and copying it first is faster than resizing it where it lies.
    image = pixels.permute(2, 0, 1).unsqueeze(0).contiguous(memory_format=torch.channels_last)
    if tuple(image.shape[-2:]) == tuple(size):
        return image[0].contiguous()
    if image.device.type != "cpu" or interpolation == "area":
        # GPUs' antialiasing kernels (data.decode=gpu) and torch's box filter take floats only
        out = _filter(image.float(), size, interpolation).round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = _filter(image, size, interpolation)
    return out[0].contiguous()


def _filter(image: Tensor, size: tuple[int, int], interpolation: str) -> Tensor:
    """``image`` resized with the named filter ("area": the box filter of Pillow and TF)."""
    if interpolation == "area":
        return F.adaptive_avg_pool2d(image, size)
    if interpolation == "nearest":
        return F.interpolate(image, size=size, mode="nearest")
    if interpolation in ("bilinear", "bicubic"):
        return F.interpolate(image, size=size, mode=interpolation, antialias=True)
    raise ValueError(f"unknown interpolation {interpolation!r}; choose from {INTERPOLATIONS}")


def crop_resize(
    image: EncodedImage,
    box: Box,
    size: tuple[int, int],
    *,
    interpolation: str = "bilinear",
    flip: bool = False,
    fast: bool = False,
) -> Tensor:
    """The source ``box`` resized to ``size``, as a (3, h, w) uint8 tensor, mirrored if ``flip``.

    Equal, up to sub-pixel rounding of the box, to resizing the whole image and cropping the
    corresponding region, which is what the papers' pipelines do.
    """
    x0, y0, x1, y1 = box
    reduce = max_reduction(y1 - y0, x1 - x0, *size)
    pixels = image.decode(reduce, fast=fast)
    sy, sx = pixels.shape[0] / image.height, pixels.shape[1] / image.width
    top, left = _clamp(y0 * sy, pixels.shape[0] - 1), _clamp(x0 * sx, pixels.shape[1] - 1)
    bottom = max(_clamp(y1 * sy, pixels.shape[0]), top + 1)
    right = max(_clamp(x1 * sx, pixels.shape[1]), left + 1)
    out = resize(pixels[top:bottom, left:right], size, interpolation)
    return out.flip(-1) if flip else out


def shorter_side_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(H, W) after an isotropic rescale to shorter side ``side``; the longer side is truncated to
    an integer, as torchvision's ``Resize(side)`` does."""
    if height <= width:
        return side, int(side * width / height)
    return int(side * height / width), side


def _clamp(value: float, high: int) -> int:
    return min(max(round(value), 0), high)
