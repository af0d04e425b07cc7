"""Evaluation protocols: how each paper cut a test image into crops. A protocol maps an encoded
image to one (3, s, s) uint8 crop or to (n_crops, 3, s, s); the LightningModule averages the
softmax over the crops, and logs under ``test/<protocol name>/...``.

The fully convolutional protocols (``whole_image = True``) feed the network whole images, whose
sizes differ from scale to scale and image to image, so they cannot be stacked into crops. They
map an image to *views*: a list of groups, each group a list of (n, 3, H, W) stacks of same-size
views. The score is the mean over groups of the group's mean softmax over its views (VGG Table 5
averages the two methods, not their 150 + 6 views). Their loaders hold one image per batch
(``collate_views``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from classicnets.data.decode import EncodedImage, resize, shorter_side_size

EVAL_PROTOCOLS = (
    "center_crop", "ten_crop", "googlenet_144", "multi_scale", "vgg_dense", "vgg_dense_multi_crop",
    "resnet_multi_scale", "crop_320",
)  # fmt: skip
GOOGLENET_SCALES = (256, 288, 320, 352)  # GoogLeNet §7: shorter side 256, 288, 320 and 352
VGG_SCALES = (256, 384, 512)  # VGG §4.2: Q = {S_min, (S_min + S_max) / 2, S_max}, S ∈ [256, 512]
VGG_GRID = 5  # VGG §3.2: "50 crops per scale (5 × 5 regular grid with 2 flips)"
RESNET_SCALES = (224, 256, 384, 480, 640)  # ResNet §3.4: "the shorter side is in {224, …, 640}"
# Pre-activation ResNet Table 5 and ResNeXt Table 5: "a single 320×320 crop from s = 320".
CROP_320 = 320

Views = list[list[Tensor]]  # groups of (n, 3, H, W) stacks: see the module docstring


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


class WholeImage:
    """Fully convolutional evaluation: the whole image at each shorter side in ``scales``, and its
    mirror when ``flips``; one group of views, averaged with equal weight.

    VGG dense (§3.2, Table 4): Q ∈ {256, 384, 512}, the FC layers as convolutions and the class
    score map averaged (``VGG._dense``), the posteriors of the image and its flip averaged, then
    over Q. ResNet (§3.4, Table 4): shorter side ∈ {224, 256, 384, 480, 640}, global average
    pooling over whatever size arrives, no flips named."""

    whole_image = True

    def __init__(self, size: int, scales: Sequence[int], *, flips: bool) -> None:
        if min(scales) < size:
            raise ValueError(f"test_scales={list(scales)} must all be at least the crop {size}")
        self.size, self.scales, self.flips = size, tuple(scales), flips
        self.n_crops = len(self.scales) * (2 if flips else 1)

    def __call__(self, image: EncodedImage) -> Views:
        return [self.views(image)]

    def views(self, image: EncodedImage) -> list[Tensor]:
        """One (1 or 2, 3, H, W) stack per scale: the image, and its mirror when flipping."""
        stacks = []
        for scaled in rescale(image, self.scales):
            stacks.append(torch.stack([scaled, scaled.flip(-1)]) if self.flips else scaled[None])
        return stacks


class DenseAndMultiCrop:
    """VGG Table 5, "multi-crop & dense": the soft-max outputs of the two methods averaged (§4.3,
    "we also assess the complementarity of the two evaluation techniques by averaging their
    soft-max outputs"), each over its own views: 150 crops, and 3 scales × 2 flips whole."""

    whole_image = True

    def __init__(self, size: int, scales: Sequence[int] = VGG_SCALES) -> None:
        self.size = size
        self.crops = MultiScaleGrid(size, scales)
        self.dense = WholeImage(size, scales, flips=True)
        self.n_crops = self.crops.n_crops + self.dense.n_crops

    def __call__(self, image: EncodedImage) -> Views:
        return [[self.crops(image)], self.dense.views(image)]


def collate_views(samples: list[tuple[Views, int] | None]) -> tuple[Views, Tensor]:
    """The batch of a whole-image protocol: one image's views and its target; an image that did
    not decode gives no views and no target, like ``SkipCollate``'s empty batch."""
    if len(samples) != 1:
        raise ValueError(f"whole-image protocols take one image per batch, got {len(samples)}")
    (sample,) = samples
    if sample is None:
        return [], torch.empty(0, dtype=torch.int64)
    views, target = sample
    return views, torch.tensor([target], dtype=torch.int64)


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


Protocol = CenterCrop | TenCrop | GoogLeNet144 | MultiScaleGrid | WholeImage | DenseAndMultiCrop


def make_protocol(
    name: str, *, input_size: int, resize: int = 256, scales: Sequence[int] | None = None
) -> Protocol:
    """The named protocol; ``resize`` is the shorter side for centre/ten crops, ``scales`` the
    shorter sides of the multi-scale ones (each paper's own when None). ``crop_320`` is its
    papers' fixed 320 crop from a shorter side of 320, whatever the training crop."""
    if name == "center_crop":
        return CenterCrop(input_size, resize)
    if name == "ten_crop":
        return TenCrop(input_size, resize)
    if name == "googlenet_144":
        return GoogLeNet144(input_size, scales or GOOGLENET_SCALES)
    if name == "multi_scale":
        return MultiScaleGrid(input_size, scales or VGG_SCALES)
    if name == "vgg_dense":
        return WholeImage(input_size, scales or VGG_SCALES, flips=True)
    if name == "vgg_dense_multi_crop":
        return DenseAndMultiCrop(input_size, scales or VGG_SCALES)
    if name == "resnet_multi_scale":
        return WholeImage(input_size, scales or RESNET_SCALES, flips=False)
    if name == "crop_320":
        return CenterCrop(CROP_320, CROP_320)
    raise ValueError(f"unknown evaluation protocol {name!r}; choose from {EVAL_PROTOCOLS}")


def default_scales(name: str) -> tuple[int, ...] | None:
    """The shorter sides the named protocol tests at when ``test_scales`` is null (each paper's
    own), None for the protocols with one fixed scale."""
    if name == "googlenet_144":
        return GOOGLENET_SCALES
    if name in ("multi_scale", "vgg_dense", "vgg_dense_multi_crop"):
        return VGG_SCALES
    if name == "resnet_multi_scale":
        return RESNET_SCALES
    return None
