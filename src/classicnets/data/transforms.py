"""The per-pixel arithmetic of the pipeline, batched on the accelerator: uint8 → float, the papers'
colour augmentation (AlexNet's PCA lighting, GoogLeNet's photometric distortions), mean/std
normalisation and the channels-last layout. Run by ``ImageNetDataModule.on_after_batch_transfer``
so the DataLoader workers only decode and crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# RECIPES "Conventions": torchvision's ImageNet statistics, RGB, pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RECIPES "PCA lighting" (fb.resnet.torch datasets/imagenet.lua): eigenvalues of the RGB
# covariance, eigenvectors in the columns, pixels in [0, 1].
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
LIGHTING_STD = 0.1  # AlexNet §4.1: α ~ N(0, 0.1)
# GoogLeNet §6 uses "the photometric distortions of Andrew Howard" without numbers; these are
# TF-slim's inception_preprocessing.distort_color (ordering 0), the reference Inception pipeline.
BRIGHTNESS_DELTA = 32 / 255
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 0.2  # a fraction of the hue circle
CONTRAST_RANGE = (0.5, 1.5)
# ITU-R 601 luma weights (what tf.image.rgb_to_grayscale and torchvision use).
LUMA = (0.299, 0.587, 0.114)
YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))  # NTSC RGB → YIQ


def pca_lighting(
    n: int,
    eigval: Tensor,
    eigvec: Tensor,
    std: float = LIGHTING_STD,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(n, 3) RGB offsets, one per image: eigvec · (α ⊙ eigval) with α ~ N(0, std)³ (AlexNet §4.1).

    Added to every pixel of the image in [0, 1] units, before normalisation."""
    alpha = torch.randn(n, 3, device=eigval.device, generator=generator) * std
    return (alpha * eigval) @ eigvec.T


def color_distort(images: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Per-image random brightness, saturation, hue and contrast of an (N, 3, H, W) float batch
    in [0, 1], in that order (TF-slim's ordering 0), clipped to [0, 1] at the end as TF-slim does.

    Saturation and hue are one 3×3 colour matrix per image: saturation blends with the luma
    grey, hue rotates the chroma plane of YIQ (a linear stand-in for TF's HSV hue shift)."""
    n, device = images.shape[0], images.device

    def uniform(low: float, high: float) -> Tensor:
        return (low + (high - low) * torch.rand(n, device=device, generator=generator)).view(
            n, 1, 1
        )

    brightness = uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)
    saturation = uniform(*SATURATION_RANGE)
    angle = uniform(-HUE_DELTA, HUE_DELTA) * 2 * math.pi
    contrast = uniform(*CONTRAST_RANGE)

    luma = torch.tensor(LUMA, device=device)
    # Saturation s: x ↦ s·x + (1 − s)·grey, with grey = luma · x.
    sat = saturation * torch.eye(3, device=device) + (1 - saturation) * luma
    # Hue: RGB → YIQ, rotate the (I, Q) plane by the angle, back to RGB.
    yiq = torch.tensor(YIQ, device=device)
    cos, sin, zero, one = angle.cos(), angle.sin(), angle * 0, angle * 0 + 1
    rot = torch.cat(
        [torch.cat(row, dim=2) for row in ((one, zero, zero), (zero, cos, -sin), (zero, sin, cos))],
        dim=1,
    )
    matrix = torch.linalg.inv(yiq) @ rot @ yiq @ sat

    x = torch.einsum("nij,njhw->nihw", matrix, images + brightness[..., None])
    # Contrast c: x ↦ c·(x − m) + m, with m the mean grey level of the image.
    grey_mean = torch.einsum("c,nchw->n", luma, x).view(n, 1, 1, 1) / x[0, 0].numel()
    return ((x - grey_mean) * contrast[..., None] + grey_mean).clamp_(0, 1)


class DeviceAugment:
    """uint8 batch → normalised float batch, on the batch's device.

    Images are (B, 3, H, W) or, for multi-crop evaluation, (B, n_crops, 3, H, W). In training the
    preset's photometric augmentation is applied per image (``"lighting"`` or ``"color"``)."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        photometric: str | None = None,
        eigval: Sequence[float] = PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = PCA_EIGVEC,
        lighting_std: float = LIGHTING_STD,
        channels_last: bool = False,
    ) -> None:
        if photometric not in (None, "lighting", "color"):
            raise ValueError(f"unknown photometric augmentation {photometric!r}")
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError("pca_eigval must have 3 values and pca_eigvec 3 rows of 3")
        self.photometric = photometric
        self.lighting_std = lighting_std
        self.channels_last = channels_last

    def __call__(self, images: Tensor, *, train: bool) -> Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 batch, got {images.dtype}")
        shape = images.shape
        x = images.reshape(-1, *shape[-3:])  # crops folded into the batch: (N, 3, H, W)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=fmt)
        device = x.device
        mean, std = self.mean.to(device), self.std.to(device)
        photometric = self.photometric if train else None
        if photometric == "color":
            x = color_distort(x.float().div_(255)).contiguous(memory_format=fmt)
            x = x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))
        else:
            # One multiply-add per pixel: (x/255 + offset − mean) / std.
            scale = (1 / (255 * std)).view(1, 3, 1, 1)
            offset = -mean.expand(x.shape[0], 3)
            if photometric == "lighting":
                eigval, eigvec = self.eigval.to(device), self.eigvec.to(device)
                offset = offset + pca_lighting(x.shape[0], eigval, eigvec, self.lighting_std)
            x = x.float().mul_(scale).add_((offset / std).view(-1, 3, 1, 1))
        return x.view(shape)
