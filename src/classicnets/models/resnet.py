"""ResNet (He, Zhang, Ren & Sun 2015, "Deep residual learning for image recognition") and
ResNeXt (Xie, Girshick, Dollár, Tu & He 2017, "Aggregated residual transformations for deep
neural networks").

Table 1 of the ResNet paper, as one ``ResNet(block, layers)``:
conv1 7×7/2 64 → maxpool 3×3/2 → conv2_x … conv5_x (64, 128, 256, 512 planes, each stage after
the first starting with stride 2) → global average pool → fc 1000. BN after every convolution, ReLU
after the addition, no dropout.

Module names follow torchvision (conv1, bn1, layer1–4, downsample, fc), so with the defaults a
torchvision ResNet state_dict loads into ours by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models.registry import register_model

Shortcut = Literal["A", "B", "C"]
PAPER = "He et al. 2015"
XIE = "Xie et al. 2017"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (the BN that follows has one)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (section 3.3): identity, subsampled by the stride, with zero channels padded on for
    the increased dimensions. Parameter free."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.extra = out_planes - in_planes
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def make_shortcut(
    in_planes: int, out_planes: int, stride: int, shortcut: Shortcut, *, norm: bool = True
) -> nn.Module | None:
    """The block's shortcut for option A, B or C; None means a plain identity.

    ``norm=False`` leaves out the BN after a projection (the pre-activation unit has none)."""
    changes = stride != 1 or in_planes != out_planes
    if shortcut == "A":
        return ZeroPadShortcut(in_planes, out_planes, stride) if changes else None
    if shortcut == "B" and not changes:
        return None
    if shortcut not in ("B", "C"):
        raise ValueError(f"shortcut must be 'A', 'B' or 'C', got {shortcut!r}")
    projection = conv1x1(in_planes, out_planes, stride)
    return nn.Sequential(projection, nn.BatchNorm2d(out_planes)) if norm else projection


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (Fig. 5 left), used by ResNet-18 and -34."""

    expansion: int = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: Shortcut = "B",
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock has no grouped (ResNeXt) form")
        if stride_in_1x1:
            raise ValueError("stride_in_1x1 concerns the Bottleneck; BasicBlock has no 1×1")
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero, so the block is its shortcut."""
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand ×4 (Fig. 5 right), used by ResNet-50/101/152.

    The paper's Caffe models stride the first 1×1 (``stride_in_1x1=True``, "v1"); fb.resnet.torch
    and torchvision stride the 3×3 ("v1.5"), which costs more MACs and gains accuracy. ResNeXt
    (Xie et al. 2017, Fig. 3c) makes the 3×3 a grouped convolution of ``groups`` paths of
    ``width_per_group`` channels each at the first stage, doubling per stage."""

    expansion: int = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: Shortcut = "B",
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        out_planes = planes * self.expansion
        self.conv1 = conv1x1(in_planes, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_planes, out_planes, stride, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero, so the block is its shortcut."""
        nn.init.zeros_(self.bn3.weight)


class ResNet(nn.Module):
    """ResNet / ResNeXt for 224×224 ImageNet input (Table 1 of He et al. 2015).

    Subclasses change the unit (``make_unit``) and the head (``forward``); the stem and the
    stage loop are this one."""

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        shortcut: Shortcut = "B",
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Every unit of the network shares the shortcut option, groups and stride placement.
        options = dict(shortcut=shortcut, stride_in_1x1=stride_in_1x1, groups=groups,
                       width_per_group=width_per_group)  # fmt: skip
        expansion: int = block.expansion  # type: ignore[assignment]
        in_planes = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            first_stride = 1 if i == 0 else 2  # conv3_1, conv4_1 and conv5_1 downsample (Table 1)
            stage = [self.make_unit(block, in_planes, planes, first_stride, i == 0, **options)]
            in_planes = planes * expansion
            stage += [self.make_unit(block, in_planes, planes, 1, False, **options)
                      for _ in range(blocks - 1)]  # fmt: skip
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self.reset_parameters(zero_init_residual)

    def make_unit(
        self, block: type[nn.Module], in_planes: int, planes: int, stride: int, first: bool,
        **options: Any,
    ) -> nn.Module:  # fmt: skip
        """One residual unit; ``first`` marks the network's first (pre-activation needs it)."""
        return block(in_planes, planes, stride, **options)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """He init (section 3.4 cites He et al. 2015b, whose section 2.2 allows either fan; fan_out
        as fb.resnet.torch and torchvision), BN γ=1, β=0; the fc keeps PyTorch's default.

        ``zero_init_residual`` starts every residual branch at zero (the last BN γ, or the last
        conv of a pre-activation unit), so each block starts as the identity (Goyal et al. 2017,
        section 5.1; not in the ResNet paper)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# One builder per variant. params and GMACs are ours, of the builders' defaults: torchvision's v1.5
# networks with option B shortcuts, whose parameter counts are torchvision's (the paper states
# none). The paper's GMACs are Table 1's FLOPs (multiply-adds), which count the networks the
# recipes build: the stride on the first 1×1 (stride_in_1x1=true; ours 3.858 / 7.570 / 11.282) and
# option A for 18/34 (ours 1.795 / 3.644).
@register_model(
    input_size=224,
    paper=PAPER,
    params=11_689_512,
    gmacs=1.814,
    paper_macs=1.8,
    torchvision_twin="resnet18",
)
def resnet18(**kwargs: Any) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=21_797_672,
    gmacs=3.664,
    paper_macs=3.6,
    torchvision_twin="resnet34",
)
def resnet34(**kwargs: Any) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=25_557_032,
    gmacs=4.089,
    paper_macs=3.8,
    torchvision_twin="resnet50",
)
def resnet50(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=44_549_160,
    gmacs=7.801,
    paper_macs=7.6,
    torchvision_twin="resnet101",
)
def resnet101(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=60_192_808,
    gmacs=11.514,
    paper_macs=11.3,
    torchvision_twin="resnet152",
)
def resnet152(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


# ResNeXt (Xie et al. 2017): bottlenecks whose 3×3 is ``groups`` paths of ``width_per_group``
# channels at conv2 (doubling per stage), the stride in the 3×3, option B shortcuts (section 4).
# params and GMACs are ours. The paper's: ResNeXt-50 Table 1 (25.0M, 4.2 GFLOPs); 101 32×4d,
# Table 3's "~7.8 billion FLOPs" of the 101-layer nets of 1× complexity, no parameter count;
# 64×4d 83.6M and 15.6 GFLOPs (recalled; Papers with Code lists 83.6M). FLOPs are multiply-adds.
# torchvision ships no 32×4d/64×4d 101.
@register_model(
    input_size=224,
    paper=XIE,
    params=25_028_904,
    gmacs=4.230,
    paper_params=25_000_000,
    paper_macs=4.2,
    torchvision_twin="resnext50_32x4d",
)
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


@register_model(input_size=224, paper=XIE, params=44_177_704, gmacs=7.970, paper_macs=7.8)
def resnext101_32x4d(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4, **kwargs)


@register_model(
    input_size=224,
    paper=XIE,
    params=83_455_272,
    gmacs=15.460,
    paper_params=83_600_000,
    paper_macs=15.6,
)
def resnext101_64x4d(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4, **kwargs)


# Not a model of the paper: torchvision's 101-layer ResNeXt, 32 paths of 8 channels; every figure
# here is ours.
@register_model(
    input_size=224,
    paper="torchvision (ResNeXt, Xie et al. 2017)",
    params=88_791_336,
    gmacs=16.414,
    torchvision_twin="resnext101_32x8d",
)
def resnext101_32x8d(**kwargs: Any) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)
