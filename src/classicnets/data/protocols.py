"""Evaluation protocols: how each paper cut a test image into crops. A protocol maps an encoded
image to one (3, s, s) uint8 crop or to (n_crops, 3, s, s); the LightningModule averages the
softmax over the crops, and logs under ``test/<protocol name>/...``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from classicnets.data.decode import EncodedImage, resize, shorter_side_size

EVAL_PROTOCOLS = ("center_crop", "ten_crop", "googlenet_144", "multi_scale")
GOOGLENET_SCALES = (256, 288, 320, 352)  # GoogLeNet §7: shorter side 256, 288, 320 and 352
VGG_SCALES = (256, 384, 512)  # VGG §4.2: Q = {S_min, (S_min + S_max) / 2, S_max}, S ∈ [256, 512]
VGG_GRID = 5  # VGG §3.2: "50 crops per scale (5 × 5 regular grid with 2 flips)"


class CenterCrop:
    """Shorter side to ``resize``, the centre size×size crop (torchvision's standard eval)."""

    def __init__(self, size: int, resize: int = 256) -> None:
        if resize < size:
            raise ValueError(f"eval_resize={resize} is smaller than the crop {size}")
        self.size, self.resize, self.n_crops = size, resize, 1

    def __call__(self, image: EncodedImage) -> Tensor:
        (scaled,) = rescale(image, [self.resize])
        return five_crops(scaled, self.size)[-1].contiguous()


class TenCrop:
    """AlexNet §4.1: the four corner and the centre size×size patches of the centre
    resize×resize square (the image AlexNet trained on), and their horizontal reflections."""

    def __init__(self, size: int, resize: int = 256) -> None:
        if resize < size:
            raise ValueError(f"eval_resize={resize} is smaller than the crop {size}")
        self.size, self.resize, self.n_crops = size, resize, 10

    def __call__(self, image: EncodedImage) -> Tensor:
        (scaled,) = rescale(image, [self.resize])
        square = five_crops(scaled, self.resize)[-1]
        crops = five_crops(square, self.size)
        return torch.stack(crops + [c.flip(-1) for c in crops])


class GoogLeNet144:
    """GoogLeNet §7: shorter side at 4 scales; the left, centre and right (top, centre, bottom for
    portraits) squares; of each, the 4 corner and the centre size×size crops and the whole
    square resized to size×size; all mirrored: 4 × 3 × 6 × 2 = 144 crops."""

    def __init__(self, size: int, scales: Sequence[int] = GOOGLENET_SCALES) -> None:
        if min(scales) < size:
            raise ValueError(f"test_scales={list(scales)} must all be at least the crop {size}")
        self.size, self.scales, self.n_crops = size, tuple(scales), len(scales) * 3 * 6 * 2

    def __call__(self, image: EncodedImage) -> Tensor:
        crops: list[Tensor] = []
        for scaled, side in zip(rescale(image, self.scales), self.scales, strict=True):
            height, width = scaled.shape[-2:]
            along = max(height, width) - side  # room for squares along the longer side
            for offset in (0, along // 2, along):
                y, x = (offset, 0) if height > width else (0, offset)
                square = scaled[:, y : y + side, x : x + side]
                crops += five_crops(square, self.size)
                crops.append(resize(square.permute(1, 2, 0), (self.size, self.size)))
        return torch.stack(crops + [c.flip(-1) for c in crops])


class MultiScaleGrid:
    """VGG multi-crop evaluation (§3.2, results §4.3): at each scale Q (shorter side), a 5×5
    regular grid of size×size crops and their flips, 50 per scale (150 for Q ∈ {256, 384, 512}).

    VGG's dense evaluation (the FC layers run as convolutions over the whole image) needs the
    network's cooperation and is not a data protocol; the paper reports both, and their
    combination as best (§4.3)."""

    def __init__(self, size: int, scales: Sequence[int] = VGG_SCALES, grid: int = VGG_GRID) -> None:
        if min(scales) < size:
            raise ValueError(f"test_scales={list(scales)} must all be at least the crop {size}")
        self.size, self.scales, self.grid = size, tuple(scales), grid
        self.n_crops = len(scales) * grid * grid * 2

    def __call__(self, image: EncodedImage) -> Tensor:
        crops: list[Tensor] = []
        for scaled in rescale(image, self.scales):
            height, width = scaled.shape[-2:]
            ys = torch.linspace(0, height - self.size, self.grid).round().int().tolist()
            xs = torch.linspace(0, width - self.size, self.grid).round().int().tolist()
            crops += [scaled[:, y : y + self.size, x : x + self.size] for y in ys for x in xs]
        return torch.stack(crops + [c.flip(-1) for c in crops])


def five_crops(image: Tensor, size: int) -> list[Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre size×size views of (3, H, W)."""
    height, width = image.shape[-2:]
    top, left = round((height - size) / 2), round((width - size) / 2)
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
    return [image[:, y : y + size, x : x + size] for y, x in [*corners, (top, left)]]


def rescale(image: EncodedImage, sides: Sequence[int]) -> list[Tensor]:
    """The image at each shorter side in ``sides``, as (3, H, W) uint8, decoded once.

    Evaluation resizes the whole image and crops on the resized pixel grid, exactly as
    torchvision's ``Resize`` + ``CenterCrop``/``TenCrop`` do, and decodes at full size: test
    numbers should not move with the loader's shortcuts."""
    pixels = image.decode()
    return [resize(pixels, shorter_side_size(image.height, image.width, side)) for side in sides]


def make_protocol(
    name: str, *, input_size: int, resize: int = 256, scales: Sequence[int] | None = None
) -> CenterCrop | TenCrop | GoogLeNet144 | MultiScaleGrid:
    """The named protocol; ``resize`` is the shorter side for centre/ten crops, ``scales`` the
    shorter sides of the multi-scale ones (each paper's own when None)."""
    if name == "center_crop":
        return CenterCrop(input_size, resize)
    if name == "ten_crop":
        return TenCrop(input_size, resize)
    if name == "googlenet_144":
        return GoogLeNet144(input_size, scales or GOOGLENET_SCALES)
    if name == "multi_scale":
        return MultiScaleGrid(input_size, scales or VGG_SCALES)
    raise ValueError(f"unknown evaluation protocol {name!r}; choose from {EVAL_PROTOCOLS}")
