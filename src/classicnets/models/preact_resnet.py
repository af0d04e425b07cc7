"""Pre-activation ResNet (He, Zhang, Ren & Sun 2016, "Identity mappings in deep residual
networks"), ImageNet form.

Each unit is BN → ReLU → conv (→ BN → ReLU → conv …), added to an untouched shortcut with no
activation after the addition (Fig. 1b, Fig. 4e). As in the paper's appendix and fb.resnet.torch's
``preresnet.lua``: the stem ends with BN + ReLU, so the first unit starts straight with its conv;
a shortcut that is not the plain identity (projection or zero padding) takes the pre-activation;
a final BN + ReLU comes before the pooling. Projections have no BN of their own. The stride is on
the 3×3 of the bottleneck, as in ``preresnet.lua``.

The switches ResNet's recipe exposes work here too, so every ResNet config shares them:
``stride_in_1x1`` moves the bottleneck's stride to its first 1×1, and ``zero_init_residual`` zeroes
the last conv of every residual branch (a pre-activation branch ends in a conv, not a BN; timm's
``ResNetV2(zero_init_last=True)`` does the same), so each unit starts as its shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from classicnets.models.registry import register_model
from classicnets.models.resnet import ResNet, Shortcut, conv1x1, conv3x3, make_shortcut

PAPER = "He et al. 2016"


class PreActBasicBlock(nn.Module):
    """BN → ReLU → 3×3 → BN → ReLU → 3×3, plus the shortcut."""

    expansion: int = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, shortcut: Shortcut = "B",
        preact: bool = True, stride_in_1x1: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        if stride_in_1x1:
            raise ValueError("stride_in_1x1 concerns the PreActBottleneck; this unit has no 1×1")
        self.bn1 = nn.BatchNorm2d(in_planes) if preact else None
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_planes, planes, stride, shortcut, norm=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = x if self.bn1 is None else self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity

    @property
    def last_conv(self) -> nn.Conv2d:
        """The conv that closes the residual branch."""
        return self.conv2

    def zero_init_last(self) -> None:
        """Zero the branch's last conv, so the unit starts as its shortcut."""
        nn.init.zeros_(self.last_conv.weight)


class PreActBottleneck(nn.Module):
    """BN → ReLU → 1×1 → BN → ReLU → 3×3 → BN → ReLU → 1×1 (×4), plus the shortcut."""

    expansion: int = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, shortcut: Shortcut = "B",
        preact: bool = True, stride_in_1x1: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes) if preact else None
        self.conv1 = conv1x1(in_planes, planes, stride if stride_in_1x1 else 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1 if stride_in_1x1 else stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_planes, out_planes, stride, shortcut, norm=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = x if self.bn1 is None else self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity

    @property
    def last_conv(self) -> nn.Conv2d:
        """The conv that closes the residual branch."""
        return self.conv3

    def zero_init_last(self) -> None:
        """Zero the branch's last conv, so the unit starts as its shortcut."""
        nn.init.zeros_(self.last_conv.weight)


class PreActResNet(ResNet):
    """Pre-activation ResNet for 224×224 ImageNet input: ResNet's stem and stages (the ResNet
    Table 1 layout) built of pre-activation units, and a final BN + ReLU before the pooling."""

    def __init__(
        self, block: type[PreActBasicBlock | PreActBottleneck], layers: Sequence[int],
        **options: Any,
    ) -> None:  # fmt: skip
        """``options`` are ResNet's: num_classes, in_channels, shortcut, stride_in_1x1,
        zero_init_residual."""
        super().__init__(block, layers, **options)
        # The last unit's sum is activated once more before pooling (appendix); a fresh BN is
        # γ=1, β=0, the init reset_parameters gives the others.
        self.final_bn = nn.BatchNorm2d(self.fc.in_features)

    def make_unit(
        self, block: type[nn.Module], in_planes: int, planes: int, stride: int, first: bool,
        **options: Any,
    ) -> nn.Module:  # fmt: skip
        """A unit; the stem's BN + ReLU is the first unit's pre-activation (appendix)."""
        if options["groups"] != 1 or options["width_per_group"] != 64:
            raise ValueError("pre-activation units have no grouped (ResNeXt) form")
        return block(in_planes, planes, stride, options["shortcut"], preact=not first,
                     stride_in_1x1=options["stride_in_1x1"])  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# One builder per variant; params and GMACs are ours, measured on this layout: the paper states
# none (its ImageNet models are the 152 and the 200). Parameters: ResNet's count less the BN of its
# projections (1,792 for 18/34, 7,680 for 50+); the other BN differences cancel: the final BN
# (2·512·expansion) balances the stage-entry BNs, which see the narrower input, and the first
# unit's, which the stem's BN replaces. GMACs equal the v1.5 ResNet's.
@register_model(input_size=224, paper=PAPER, params=11_687_720, gmacs=1.814)
def preact_resnet18(**kwargs: Any) -> PreActResNet:
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(input_size=224, paper=PAPER, params=21_795_880, gmacs=3.664)
def preact_resnet34(**kwargs: Any) -> PreActResNet:
    return PreActResNet(PreActBasicBlock, [3, 4, 6, 3], **kwargs)


@register_model(input_size=224, paper=PAPER, params=25_549_352, gmacs=4.089)
def preact_resnet50(**kwargs: Any) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], **kwargs)


@register_model(input_size=224, paper=PAPER, params=44_541_480, gmacs=7.801)
def preact_resnet101(**kwargs: Any) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], **kwargs)


@register_model(input_size=224, paper=PAPER, params=60_185_128, gmacs=11.514)
def preact_resnet152(**kwargs: Any) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 8, 36, 3], **kwargs)


# Table 5's ResNet-200 (fb.resnet.torch's preresnet.lua: [3, 24, 36, 3]); ResNeXt's Table 4 ranks
# it among the nets of twice ResNet-101's ~7.8 GFLOPs.
@register_model(input_size=224, paper=PAPER, params=64_666_152, gmacs=15.007)
def preact_resnet200(**kwargs: Any) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 24, 36, 3], **kwargs)
