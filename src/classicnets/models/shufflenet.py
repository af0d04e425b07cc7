"""ShuffleNet v1 (Zhang, Zhou, Lin & Sun 2017, "ShuffleNet: An extremely efficient convolutional
neural network for mobile devices") and ShuffleNet v2 (Ma, Zhang, Zheng & Sun 2018, "ShuffleNet V2:
Practical guidelines for efficient CNN architecture design").

Both follow their paper's Table 1 (at 224×224): conv1 3×3/2 24 → maxpool 3×3/2 → stages 2–4 of
1 + 3, 1 + 7, 1 + 3 units (the first of each with stride 2) → (v2: conv5 1×1) → global average
pool → fc. ShuffleNet v2's module names follow torchvision's, so its state_dicts load by name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models.registry import register_model

STAGE_REPEATS: tuple[int, ...] = (4, 8, 4)  # units per stage, the first with stride 2 (Table 1)

# v1 Table 1, 1× complexity: output channels of stages 2–4 for each number of groups g.
V1_WIDTHS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}

# v2 Table 5: output channels of conv1, stages 2–4 and conv5 for each width.
V2_WIDTHS: dict[str, tuple[int, int, int, int, int]] = {
    "0.5": (24, 48, 96, 192, 1024),
    "1.0": (24, 116, 232, 464, 1024),
    "1.5": (24, 176, 352, 704, 1024),
    "2.0": (24, 244, 488, 976, 2048),
}


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Fig. 1c of v1: reshape the channels to (groups, n), transpose to (n, groups), flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:  # fmt: skip
    """Convolution (no bias) → BN (→ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_channels),
    ]  # fmt: skip
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _megvii_init(model: nn.Module) -> None:
    """The official code's initialisation (megvii-model/ShuffleNet-Series; the papers give none):
    conv1 N(0, 0.01), other convs N(0, std = 1 / input channels per group), BN γ=1 β=1e-4,
    fc N(0, 0.01) with zero bias."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            std = 0.01 if name.startswith("conv1") else 1.0 / m.weight.shape[1]
            nn.init.normal_(m.weight, 0, std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.constant_(m.bias, 1e-4)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ShuffleUnit(nn.Module):
    """v1 Fig. 2b/c: 1×1 GConv → BN → ReLU → shuffle → 3×3 DWConv → BN → 1×1 GConv → BN, added to
    the input (then ReLU), or for stride 2 concatenated with a 3×3/2 average pool of the input."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, groups: int,
        group_first_conv: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stride = stride
        self.groups = groups
        # Stride-2 units concatenate, so their branch only adds the missing channels.
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        mid = out_channels // 4  # "bottleneck channels ... 1/4 of the output channels" (sec. 3.2)
        # Stage 2's first 1×1 stays dense: its 24 input channels are too few to group (sec. 3.3).
        self.gconv1 = conv_bn(in_channels, mid, groups=groups if group_first_conv else 1)
        self.dwconv = conv_bn(mid, mid, 3, stride, groups=mid, relu=False)
        self.gconv2 = conv_bn(mid, branch_channels, groups=groups, relu=False)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        out = channel_shuffle(self.gconv1(x), self.groups)
        out = self.gconv2(self.dwconv(out))
        if self.shortcut is None:
            return F.relu(x + out)
        # The pooled input is already non-negative, so ReLU after the concat touches only `out`.
        return torch.cat([self.shortcut(x), F.relu(out)], dim=1)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 at 1× complexity with ``groups`` ∈ {1, 2, 3, 4, 8} (Table 1)."""

    def __init__(self, groups: int = 3, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if groups not in V1_WIDTHS:
            raise ValueError(f"groups must be one of {sorted(V1_WIDTHS)}, got {groups}")
        self.conv1 = conv_bn(in_channels, 24, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 24
        stages = []
        for i, (repeats, width) in enumerate(zip(STAGE_REPEATS, V1_WIDTHS[groups], strict=True)):
            units = [ShuffleUnit(channels, width, 2, groups, group_first_conv=i > 0)]
            units += [ShuffleUnit(width, width, 1, groups) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            channels = width
        self.stage2, self.stage3, self.stage4 = stages
        # The official code's classifier has no bias; the paper does not say.
        self.fc = nn.Linear(channels, num_classes, bias=False)
        _megvii_init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(x.mean((2, 3)))


class ShuffleV2Unit(nn.Module):
    """v2 Fig. 3c/d. Stride 1: split the channels in half, pass one half through 1×1 → 3×3 DW →
    1×1 and concatenate it with the other. Stride 2: no split, both halves see the whole input,
    the left one through 3×3/2 DW → 1×1. Then shuffle the two halves together."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_channels // 2
        if stride == 2:
            self.branch1: nn.Sequential | None = nn.Sequential(
                *conv_bn(in_channels, in_channels, 3, stride, groups=in_channels, relu=False),
                *conv_bn(in_channels, half),
            )
        else:
            self.branch1 = None
        self.branch2 = nn.Sequential(
            *conv_bn(in_channels if stride == 2 else half, half),
            *conv_bn(half, half, 3, stride, groups=half, relu=False),
            *conv_bn(half, half),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.branch1 is None:
            kept, x = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch2(x)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet v2 at one of the widths of Table 5 ("0.5", "1.0", "1.5", "2.0").

    ``fc_bias``: the classifier's bias; the official code (megvii-model/ShuffleNet-Series,
    ``ShuffleNetV2/network.py``) has none, torchvision's has one (so its weights load here)."""

    def __init__(
        self, width: str = "1.0", num_classes: int = 1000, in_channels: int = 3,
        *, fc_bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        if width not in V2_WIDTHS:
            raise ValueError(f"width must be one of {sorted(V2_WIDTHS)}, got {width!r}")
        stem, *stage_widths, last = V2_WIDTHS[width]
        self.conv1 = conv_bn(in_channels, stem, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem
        stages = []
        for repeats, out_channels in zip(STAGE_REPEATS, stage_widths, strict=True):
            units = [ShuffleV2Unit(channels, out_channels, 2)]
            units += [ShuffleV2Unit(out_channels, out_channels, 1) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            channels = out_channels
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = conv_bn(channels, last)
        self.fc = nn.Linear(last, num_classes, bias=fc_bias)
        _megvii_init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean((2, 3)))


V1_PAPER = "Zhang et al. 2017"
V2_PAPER = "Ma et al. 2018"


# One builder per variant. params and GMACs are ours, counted on these layouts (v2's parameter
# counts are also torchvision's); the papers give no parameter counts (the official code's README
# rounds v1 g=3 to 1.9M, g=8 to 2.4M, and v2 to 1.4 / 2.3 / 3.5 / 7.4M). Paper MFLOPs: v1 Table 1's
# complexity row (143, 140, 137, 133, 137 for g = 1, 2, 3, 4, 8; recalled, docs/recipes.md has
# g=3's 137-138M); v2 Table 5 (41, 146, 299, 591).
@register_model(input_size=224, paper=V1_PAPER, params=1_530_936, gmacs=0.1431, paper_macs=0.143)
def shufflenet_v1_g1(**kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(1, **kwargs)


@register_model(input_size=224, paper=V1_PAPER, params=1_732_848, gmacs=0.1408, paper_macs=0.140)
def shufflenet_v1_g2(**kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(2, **kwargs)


@register_model(input_size=224, paper=V1_PAPER, params=1_864_728, gmacs=0.1375, paper_macs=0.137)
def shufflenet_v1_g3(**kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(3, **kwargs)


@register_model(input_size=224, paper=V1_PAPER, params=1_967_344, gmacs=0.1343, paper_macs=0.133)
def shufflenet_v1_g4(**kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(4, **kwargs)


@register_model(input_size=224, paper=V1_PAPER, params=2_433_768, gmacs=0.1384, paper_macs=0.137)
def shufflenet_v1_g8(**kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(8, **kwargs)


# The official code adds dropout 0.2 before the 2× fc; the paper and torchvision do not.
@register_model(
    input_size=224,
    paper=V2_PAPER,
    params=1_366_792,
    gmacs=0.0405,
    paper_macs=0.041,
    torchvision_twin="shufflenet_v2_x0_5",
)
def shufflenet_v2_x0_5(**kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2("0.5", **kwargs)


@register_model(
    input_size=224,
    paper=V2_PAPER,
    params=2_278_604,
    gmacs=0.1449,
    paper_macs=0.146,
    torchvision_twin="shufflenet_v2_x1_0",
)
def shufflenet_v2_x1_0(**kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2("1.0", **kwargs)


@register_model(
    input_size=224,
    paper=V2_PAPER,
    params=3_503_624,
    gmacs=0.2958,
    paper_macs=0.299,
    torchvision_twin="shufflenet_v2_x1_5",
)
def shufflenet_v2_x1_5(**kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2("1.5", **kwargs)


@register_model(
    input_size=224,
    paper=V2_PAPER,
    params=7_393_996,
    gmacs=0.5833,
    paper_macs=0.591,
    torchvision_twin="shufflenet_v2_x2_0",
)
def shufflenet_v2_x2_0(**kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2("2.0", **kwargs)
