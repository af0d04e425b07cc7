"""The papers' training augmentation, geometric half: each preset turns an encoded image into a
(3, size, size) uint8 crop inside the DataLoader worker. The photometric half (PCA lighting,
colour distortion) and normalisation run batched on the accelerator (see ``transforms.py``).

Randomness comes from torch's generator, which the DataLoader seeds per worker from the main
process, so ``seed_everything`` makes the crops reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from classicnets.data.decode import INTERPOLATIONS, EncodedImage, crop_resize, shorter_side_size
from classicnets.data.folder import SampleTransform

TRAIN_PRESETS = (
    "alexnet", "zfnet", "vgg", "googlenet", "resnet", "fb_resnet", "mobilenet", "shufflenet",
    "torchvision",
)  # fmt: skip


@dataclass(frozen=True)
class TrainPreset:
    """What a paper did to a training image: the worker's crop, the device's colour change and
    the pixel scale the network sees (a name in ``transforms.PIXEL_SCALES``)."""

    transform: SampleTransform
    photometric: str | None  # a name in transforms.PHOTOMETRIC
    normalization: str


class ScaleCrop:
    """Rescale the shorter side to S ~ U[s_min, s_max] (integers), take a random size×size crop of
    the result (of its centre S×S square if ``center_square``) and mirror it half the time."""

    def __init__(self, size: int, scale: tuple[int, int], *, center_square: bool) -> None:
        if not size <= scale[0] <= scale[1]:
            raise ValueError(f"shorter-side range {scale} must satisfy {size} <= min <= max")
        self.size, self.scale, self.center_square = size, tuple(scale), center_square

    def __call__(self, image: EncodedImage) -> Tensor:
        h, w = image.height, image.width
        side = int(torch.randint(self.scale[0], self.scale[1] + 1, ()))
        k = side / min(h, w)  # source pixels → rescaled pixels
        rh, rw = shorter_side_size(h, w, side)
        top, left, region_h, region_w = 0, 0, rh, rw
        if self.center_square:
            top, left, region_h, region_w = (
                round((rh - side) / 2),
                round((rw - side) / 2),
                side,
                side,
            )
        y = top + int(torch.randint(region_h - self.size + 1, ()))
        x = left + int(torch.randint(region_w - self.size + 1, ()))
        box = (x / k, y / k, (x + self.size) / k, (y + self.size) / k)
        flip = bool(torch.rand(()) < 0.5)
        return crop_resize(image, box, (self.size, self.size), flip=flip, fast=True)


class TenSubCrops:
    """ZFNet §3: shorter side 256, the centre 256×256 square, and one of its "10 different
    sub-crops of size 224×224 (corners + center with(out) horizontal flips)", drawn per image."""

    def __init__(self, size: int, side: int = 256) -> None:
        if size > side:
            raise ValueError(f"crop {size} is larger than the {side}×{side} square")
        self.size, self.side = size, side

    def __call__(self, image: EncodedImage) -> Tensor:
        h, w = image.height, image.width
        k = self.side / min(h, w)  # source pixels → rescaled pixels
        rh, rw = shorter_side_size(h, w, self.side)
        top, left = round((rh - self.side) / 2), round((rw - self.side) / 2)
        room = self.side - self.size
        corner = int(torch.randint(5, ()))  # 4 corners, then the centre
        dy, dx = [(0, 0), (0, room), (room, 0), (room, room), (room // 2, room // 2)][corner]
        y, x = top + dy, left + dx
        box = (x / k, y / k, (x + self.size) / k, (y + self.size) / k)
        flip = bool(torch.rand(()) < 0.5)
        return crop_resize(image, box, (self.size, self.size), flip=flip, fast=True)


class AreaCrop:
    """A crop of a random fraction of the area and aspect ratio, resized to size×size, mirrored
    half the time; the sampling is torchvision's ``RandomResizedCrop`` (10 tries, then a centre
    crop), the interpolation drawn per image from ``interpolations``."""

    def __init__(
        self,
        size: int,
        *,
        area: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolations: tuple[str, ...] = ("bilinear",),
        log_ratio: bool = True,
    ) -> None:
        if unknown := set(interpolations) - set(INTERPOLATIONS):
            raise ValueError(f"unknown interpolations {unknown}; choose from {INTERPOLATIONS}")
        self.size, self.area, self.ratio = size, area, ratio
        self.interpolations = interpolations
        self.log_ratio = log_ratio  # torchvision: log-uniform aspect; fb.resnet.torch: uniform

    def __call__(self, image: EncodedImage) -> Tensor:
        top, left, ch, cw = self.sample_box(image.height, image.width)
        choice = (
            int(torch.randint(len(self.interpolations), ())) if len(self.interpolations) > 1 else 0
        )
        flip = bool(torch.rand(()) < 0.5)
        return crop_resize(
            image,
            (left, top, left + cw, top + ch),
            (self.size, self.size),
            interpolation=self.interpolations[choice],
            flip=flip,
            fast=True,
        )

    def sample_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop in source pixels."""
        low, high = self.ratio
        if self.log_ratio:
            low, high = math.log(low), math.log(high)
        for _ in range(10):
            u = torch.rand(2).tolist()
            target = h * w * (self.area[0] + u[0] * (self.area[1] - self.area[0]))
            aspect = low + u[1] * (high - low)
            aspect = math.exp(aspect) if self.log_ratio else aspect
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(h - ch + 1, ()))
                left = int(torch.randint(w - cw + 1, ()))
                return top, left, ch, cw
        # Fallback: the largest centred crop within the aspect-ratio limits.
        if w / h < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif w / h > self.ratio[1]:
            cw, ch = round(h * self.ratio[1]), h
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw


# Shorter-side ranges S of the presets that rescale: AlexNet §4.1 (256, from the centre square);
# VGG §3.1 (its best "scale jittering", S ~ U[256, 512]; [256, 256] or [384, 384] for fixed S);
# ResNet §3.4.
TRAIN_SCALES = {"alexnet": (256, 256), "vgg": (256, 512), "resnet": (256, 480)}


def make_train_preset(
    name: str, *, input_size: int, train_scale: tuple[int, int] | None = None
) -> TrainPreset:
    """The named paper's training augmentation; ``train_scale`` overrides the shorter-side range
    of the presets that rescale (alexnet, vgg, resnet)."""
    scales = TRAIN_SCALES
    if name in scales:
        scale = tuple(train_scale) if train_scale is not None else scales[name]
        crop = ScaleCrop(input_size, scale, center_square=name == "alexnet")
        # All three add AlexNet's PCA colour shift (AlexNet §4.1, VGG §3.1, ResNet §3.4) and feed
        # raw pixels minus the mean (AlexNet §2 and ResNet §3.4 a per-pixel mean image, VGG §2.1
        # the mean RGB).
        return TrainPreset(crop, "lighting", "mean_subtracted")
    if train_scale is not None:
        raise ValueError(
            f"train_scale applies to the alexnet, vgg and resnet presets, not {name!r}"
        )
    if name == "zfnet":
        # ZFNet §3: 10 fixed sub-crops of the centre 256² square, per-pixel mean subtracted; no
        # colour augmentation is mentioned, so none.
        return TrainPreset(TenSubCrops(input_size), None, "mean_subtracted")
    if name == "googlenet":
        # GoogLeNet §6: 8–100% of the area, aspect 3/4–4/3, the interpolation drawn from
        # bilinear, area, nearest and cubic "with equal probability", photometric distortions;
        # the mean subtracted on 0-255 as Caffe's bvlc_googlenet (the paper: "mean subtraction").
        interpolations = ("bilinear", "area", "nearest", "bicubic")
        crop = AreaCrop(input_size, interpolations=interpolations)
        return TrainPreset(crop, "color", "mean_subtracted")
    if name == "fb_resnet":
        # fb.resnet.torch datasets/imagenet.lua, the code ResNeXt §5 cites: RandomSizedCrop
        # (8–100% area, aspect drawn uniformly in [3/4, 4/3], bicubic), ColorJitter 0.4,
        # Lighting 0.1, flip, mean/std on [0, 1].
        crop = AreaCrop(input_size, interpolations=("bicubic",), log_ratio=False)
        return TrainPreset(crop, "jitter_lighting", "torchvision")
    if name == "mobilenet":
        # MobileNet v1 §3.2: Inception crops with "less ... data augmentation" by "limiting the
        # size of small crops". The paper gives no number: the 25% minimum area is ours. Pixels
        # in [-1, 1] as TF-slim's inception preprocessing, the authors' training code.
        crop = AreaCrop(input_size, area=(0.25, 1.0))
        return TrainPreset(crop, None, "inception")
    if name == "shufflenet":
        # The official ShuffleNet-Series train.py: RandomResizedCrop(224), ColorJitter(0.4, 0.4,
        # 0.4), flip, ToBGRTensor (BGR, 0-255, no mean).
        return TrainPreset(AreaCrop(input_size), "jitter", "bgr_255")
    if name == "torchvision":
        # torchvision references/classification: RandomResizedCrop + RandomHorizontalFlip.
        return TrainPreset(AreaCrop(input_size), None, "torchvision")
    raise ValueError(f"unknown train_preset {name!r}; choose from {TRAIN_PRESETS}")
