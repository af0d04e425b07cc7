"""The per-pixel arithmetic of the pipeline, batched on the accelerator: uint8 → float, the papers'
colour augmentation (AlexNet's PCA lighting, GoogLeNet's photometric distortions, the colour
jitter of fb.resnet.torch and ShuffleNet), each paper's pixel scale and the channels-last layout.
Run by ``ImageNetDataModule.on_after_batch_transfer``: the DataLoader workers only decode and crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# docs/recipes.md "Conventions": torchvision's ImageNet statistics, RGB, pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The ILSVRC-2012 mean RGB on 0-255 that the VGG authors published with their Caffe models
# (123.68, 116.779, 103.939), here in [0, 1] units. Caffe's bvlc_googlenet subtracts 104/117/123
# (BGR) and the per-channel means of Caffe's ilsvrc_2012_mean image agree with it within a level.
MEAN_RGB = (123.68 / 255, 116.779 / 255, 103.939 / 255)
RAW = (1 / 255, 1 / 255, 1 / 255)  # std that keeps pixels on the papers' 0-255 scale
# docs/recipes.md "PCA lighting" (fb.resnet.torch datasets/imagenet.lua): eigenvalues of the RGB
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
# fb.resnet.torch (datasets/imagenet.lua) and the official ShuffleNet code (torchvision's
# ColorJitter(0.4, 0.4, 0.4)): brightness, contrast and saturation factors drawn from [0.6, 1.4].
JITTER = 0.4


@dataclass(frozen=True)
class PixelScale:
    """How a paper fed pixels to its network: ``(x / 255 − mean) / std`` per channel, with x the
    0-255 pixel and mean, std in [0, 1] units, then the channels reversed if ``bgr``.

    ``std`` = 1/255 keeps the papers' raw 0-255 scale: the network sees ``x − 255 · mean``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False


# Named by what they do; each preset's paper picks one (presets.py), data.normalization overrides.
PIXEL_SCALES = {
    # torchvision's references: per-channel mean/std on [0, 1] (also fb.resnet.torch's).
    "torchvision": PixelScale(IMAGENET_MEAN, IMAGENET_STD),
    # Raw 0-255 pixels minus the mean RGB: VGG §2.1, Caffe's bvlc_googlenet; for AlexNet, ZFNet
    # and ResNet, who subtracted a per-pixel mean image, the per-channel mean stands in unless
    # data.mean_image gives the image (scripts/compute_pca.py computes it).
    "mean_subtracted": PixelScale(MEAN_RGB, RAW),
    # TF-slim's inception preprocessing (MobileNet's reference): pixels in [-1, 1].
    "inception": PixelScale((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # The official ShuffleNet code (ShuffleNet-Series, ToBGRTensor): BGR, 0-255, no mean.
    "bgr_255": PixelScale((0.0, 0.0, 0.0), RAW, bgr=True),
}
PHOTOMETRIC = (None, "lighting", "color", "jitter", "jitter_lighting")


def pixel_scale(
    name: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> PixelScale:
    """The named pixel scale, with a dataset's own per-channel ``mean``/``std`` (in [0, 1]
    units, as scripts/compute_pca.py prints them) in place of ImageNet's where given."""
    if name not in PIXEL_SCALES:
        raise ValueError(f"unknown normalization {name!r}; choose from {sorted(PIXEL_SCALES)}")
    scale = PIXEL_SCALES[name]
    as_triple = lambda values: tuple(float(v) for v in values)  # noqa: E731
    return PixelScale(
        as_triple(mean) if mean is not None else scale.mean,
        as_triple(std) if std is not None else scale.std,
        scale.bgr,
    )


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


def color_jitter(
    images: Tensor, strength: float = JITTER, *, generator: torch.Generator | None = None
) -> Tensor:
    """torchvision's ``ColorJitter(strength, strength, strength)`` per image of an (N, 3, H, W)
    float batch in [0, 1]: brightness (blend with black), contrast (with the mean grey level) and
    saturation (with the pixel's grey), each factor ~ U[1 − strength, 1 + strength], clipped to
    [0, 1] after each step. torchvision draws the order per image; here one order per batch."""
    n, device = images.shape[0], images.device
    factors = 1 + strength * (2 * torch.rand(3, n, 1, 1, 1, device=device, generator=generator) - 1)
    luma = torch.tensor(LUMA, device=device).view(1, 3, 1, 1)
    x = images
    for step in torch.randperm(3, generator=generator).tolist():
        factor = factors[step]
        if step == 0:
            x = x * factor
        elif step == 1:
            grey_mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = factor * x + (1 - factor) * grey_mean
        else:
            x = factor * x + (1 - factor) * (x * luma).sum(1, keepdim=True)
        x = x.clamp(0, 1)
    return x


class DeviceAugment:
    """uint8 batch → the paper's float batch, on the batch's device.

    Images are (B, 3, H, W) or, for multi-crop evaluation, (B, n_crops, 3, H, W). In training the
    preset's photometric augmentation is applied per image: ``"lighting"`` (AlexNet's PCA),
    ``"color"`` (GoogLeNet's distortions), ``"jitter"`` (ColorJitter 0.4) or
    ``"jitter_lighting"`` (fb.resnet.torch: jitter, then lighting). ``mean_image`` (3, h, w) in
    [0, 1] units replaces the per-channel mean: its centre crop of each batch's size (resized
    when smaller) is subtracted, a fixed-position stand-in for Caffe's mean at the crop's place."""

    def __init__(
        self,
        scale: PixelScale = PIXEL_SCALES["torchvision"],
        *,
        photometric: str | None = None,
        eigval: Sequence[float] = PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = PCA_EIGVEC,
        lighting_std: float = LIGHTING_STD,
        mean_image: Tensor | None = None,
        channels_last: bool = False,
    ) -> None:
        if photometric not in PHOTOMETRIC:
            raise ValueError(f"unknown photometric augmentation {photometric!r}")
        self.mean = torch.tensor(scale.mean, dtype=torch.float32)
        self.std = torch.tensor(scale.std, dtype=torch.float32)
        self.bgr = scale.bgr
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError("pca_eigval must have 3 values and pca_eigvec 3 rows of 3")
        if mean_image is not None and (mean_image.dim() != 3 or mean_image.shape[0] != 3):
            raise ValueError(f"a mean image is (3, H, W), got {tuple(mean_image.shape)}")
        self.mean_image = mean_image.float() if mean_image is not None else None
        self._mean_crops: dict[tuple[int, int, torch.device], Tensor] = {}
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
        std = self.std.to(device)
        # A per-pixel mean image is subtracted after the per-channel arithmetic below.
        mean = self.mean.to(device) if self.mean_image is None else torch.zeros(3, device=device)
        offset = -mean.expand(x.shape[0], 3)
        photometric = self.photometric if train else None
        if photometric in ("lighting", "jitter_lighting"):
            eigval, eigvec = self.eigval.to(device), self.eigvec.to(device)
            offset = offset + pca_lighting(x.shape[0], eigval, eigvec, self.lighting_std)
        if photometric in ("color", "jitter", "jitter_lighting"):
            x = x.float().div_(255)
            x = color_distort(x) if photometric == "color" else color_jitter(x)
            x = x.contiguous(memory_format=fmt).add_(offset.view(-1, 3, 1, 1))
            x = x.div_(std.view(1, 3, 1, 1))
        else:  # one multiply-add per pixel: (x/255 + offset) / std
            scale = (1 / (255 * std)).view(1, 3, 1, 1)
            x = x.float().mul_(scale).add_((offset / std).view(-1, 3, 1, 1))
        if self.mean_image is not None:
            x = x.sub_(self._mean_crop(x.shape[-2], x.shape[-1], device) / std.view(3, 1, 1))
        if self.bgr:
            x = x.flip(1).contiguous(memory_format=fmt)
        return x.view(shape)

    def _mean_crop(self, height: int, width: int, device: torch.device) -> Tensor:
        key = (height, width, device)
        if key not in self._mean_crops:
            image = self.mean_image
            h, w = image.shape[-2:]
            if h < height or w < width:  # a larger test crop (e.g. 320): scale the mean up
                k = max(height / h, width / w)
                size = (max(height, math.ceil(h * k)), max(width, math.ceil(w * k)))
                image = torch.nn.functional.interpolate(
                    image[None], size=size, mode="bilinear", align_corners=False
                )[0]
                h, w = image.shape[-2:]
            top, left = (h - height) // 2, (w - width) // 2
            crop = image[:, top : top + height, left : left + width]
            self._mean_crops[key] = crop.to(device).contiguous()
        return self._mean_crops[key]
