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

from functools import partial

import torch
from torch import Tensor, nn

from classicnets.models.registry import register_model
from classicnets.models.resnet import Shortcut, conv1x1, conv3x3, make_shortcut

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


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 224×224 ImageNet input (the ResNet Table 1 layout)."""

    def __init__(
        self,
        block: type[PreActBasicBlock | PreActBottleneck],
        layers: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        shortcut: Shortcut = "B",
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        unit = partial(block, shortcut=shortcut, stride_in_1x1=stride_in_1x1)
        in_planes = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            # The stem's BN + ReLU is the first unit's pre-activation (appendix).
            stage = [unit(in_planes, planes, 1 if i == 0 else 2, preact=i > 0)]
            in_planes = planes * block.expansion
            stage += [unit(in_planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # The last unit's sum is activated once more before pooling (appendix).
        self.final_bn = nn.BatchNorm2d(in_planes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init, fan_out (preresnet.lua's MSRinit)
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, PreActBasicBlock | PreActBottleneck):
                    nn.init.zeros_(m.last_conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# Parameters: ResNet's count less the BN of its projections (1,792 for 18/34, 7,680 for 50+).
# The other BN differences cancel: the final BN (2·512·expansion) balances the stage-entry BNs,
# which see the narrower input, and the first unit's, which the stem's BN replaces. The figures are
# computed from this layout (the paper states none); MACs equal the v1.5 ResNet's.
@register_model("preact_resnet18", input_size=224, paper=PAPER, paper_params=11_687_720,
                paper_macs=1.814)  # fmt: skip
def preact_resnet18(
    *, num_classes: int = 1000, in_channels: int = 3, shortcut: Shortcut = "B",
    stride_in_1x1: bool = False, zero_init_residual: bool = False,
) -> PreActResNet:  # fmt: skip
    """Pre-activation ResNet-18: basic units [2, 2, 2, 2]."""
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], num_classes, in_channels, shortcut,
                        stride_in_1x1, zero_init_residual)  # fmt: skip


@register_model("preact_resnet34", input_size=224, paper=PAPER, paper_params=21_795_880,
                paper_macs=3.664)  # fmt: skip
def preact_resnet34(
    *, num_classes: int = 1000, in_channels: int = 3, shortcut: Shortcut = "B",
    stride_in_1x1: bool = False, zero_init_residual: bool = False,
) -> PreActResNet:  # fmt: skip
    """Pre-activation ResNet-34: basic units [3, 4, 6, 3]."""
    return PreActResNet(PreActBasicBlock, [3, 4, 6, 3], num_classes, in_channels, shortcut,
                        stride_in_1x1, zero_init_residual)  # fmt: skip


@register_model("preact_resnet50", input_size=224, paper=PAPER, paper_params=25_549_352,
                paper_macs=4.089)  # fmt: skip
def preact_resnet50(
    *, num_classes: int = 1000, in_channels: int = 3, shortcut: Shortcut = "B",
    stride_in_1x1: bool = False, zero_init_residual: bool = False,
) -> PreActResNet:  # fmt: skip
    """Pre-activation ResNet-50: bottleneck units [3, 4, 6, 3]."""
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes, in_channels, shortcut,
                        stride_in_1x1, zero_init_residual)  # fmt: skip


@register_model("preact_resnet101", input_size=224, paper=PAPER, paper_params=44_541_480,
                paper_macs=7.801)  # fmt: skip
def preact_resnet101(
    *, num_classes: int = 1000, in_channels: int = 3, shortcut: Shortcut = "B",
    stride_in_1x1: bool = False, zero_init_residual: bool = False,
) -> PreActResNet:  # fmt: skip
    """Pre-activation ResNet-101: bottleneck units [3, 4, 23, 3]."""
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], num_classes, in_channels, shortcut,
                        stride_in_1x1, zero_init_residual)  # fmt: skip


@register_model("preact_resnet152", input_size=224, paper=PAPER, paper_params=60_185_128,
                paper_macs=11.514)  # fmt: skip
def preact_resnet152(
    *, num_classes: int = 1000, in_channels: int = 3, shortcut: Shortcut = "B",
    stride_in_1x1: bool = False, zero_init_residual: bool = False,
) -> PreActResNet:  # fmt: skip
    """Pre-activation ResNet-152: bottleneck units [3, 8, 36, 3]."""
    return PreActResNet(PreActBottleneck, [3, 8, 36, 3], num_classes, in_channels, shortcut,
                        stride_in_1x1, zero_init_residual)  # fmt: skip
