"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient convolutional neural networks for
mobile vision applications") and MobileNet v2 (Sandler, Howard, Zhu, Zhmoginov & Chen 2018,
"MobileNetV2: Inverted residuals and linear bottlenecks").

Both are written as the papers' tables: v1 as a list of (channels, stride) depthwise-separable
layers (Table 1), v2 as its (t, c, n, s) rows of inverted residuals (Table 2). MobileNet v2's
module names follow torchvision's, so a torchvision state_dict loads into ours by name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from classicnets.models.registry import register_model

# Table 1 of the v1 paper after the stem: the pointwise output channels and the stride of the
# depthwise 3×3 before it. The table prints "s2" for the last depthwise layer, but its input and
# output are both 7×7, so the stride is 1 (as in every implementation).
V1_LAYERS: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]  # fmt: skip

# Table 2 of the v2 paper: expansion t, output channels c, repeats n, stride s of the first.
V2_SETTING: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class ConvBNAct(nn.Sequential):
    """Convolution (no bias) → BN → activation; ``groups=channels`` makes it depthwise."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        groups: int = 1, activation: type[nn.Module] = nn.ReLU,
    ) -> None:  # fmt: skip
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )  # fmt: skip


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10% of it (the
    TF-slim rule the v2 paper's released models, and torchvision, use for width multipliers)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _init_weights(model: nn.Module) -> None:
    """He init (fan_out) for convs, N(0, 0.01) for the classifier. Neither paper gives one; this is
    torchvision's MobileNet v2 initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class DepthwiseSeparable(nn.Sequential):
    """Fig. 3 right of the v1 paper: 3×3 depthwise → BN → ReLU → 1×1 pointwise → BN → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels),
            ConvBNAct(in_channels, out_channels, 1),
        )


class MobileNetV1(nn.Module):
    """MobileNet v1: Table 1, with the width multiplier α of section 3.3."""

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0
    ) -> None:
        super().__init__()

        def width(channels: int) -> int:
            # α thins every layer (section 3.3); TF-slim's floor of 8 channels keeps α=0.25 sane.
            return max(int(channels * width_mult), 8)

        layers: list[nn.Module] = [ConvBNAct(in_channels, width(32), 3, stride=2)]
        channels = width(32)
        for out_channels, stride in V1_LAYERS:
            layers.append(DepthwiseSeparable(channels, width(out_channels), stride))
            channels = width(out_channels)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # "All layers are followed by a batchnorm and ReLU nonlinearity with the exception of the
        # final fully connected layer" (section 3.2); the paper uses no dropout.
        self.fc = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """Table 1 of the v2 paper: 1×1 expand ×t → ReLU6 → 3×3 depthwise → ReLU6 → 1×1 linear
    projection, with a residual connection when the input and output shapes agree."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # t = 1 (the first row) has no expansion layer
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            # Linear bottleneck: no activation after the projection (section 3.2).
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2: Table 2, with the width multiplier of section 4."""

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
        dropout: float = 0.2,
    ) -> None:  # fmt: skip
        super().__init__()
        channels = make_divisible(32 * width_mult)
        # "For multipliers less than one, we apply width multiplier to all layers except the very
        # last convolutional layer" (section 4, "Trade-off hyper parameters").
        self.last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, activation=nn.ReLU6)]
        for t, c, n, s in V2_SETTING:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
                channels = out_channels
        layers.append(ConvBNAct(channels, self.last_channels, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        # The paper names no dropout; 0.2 is torchvision's, after TF-slim's keep_prob of 0.8.
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.last_channels, num_classes)
        )
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# params and GMACs are ours. v1: 4,231,976 is Table 1 counted exactly (convs without bias, BN γ/β,
# fc with bias), which the paper rounds to 4.2M; its Table 1 MACs are 569M. v2: ours equal
# torchvision's; the paper says 3.4M parameters and 300M MACs (docs/recipes.md).
@register_model("mobilenet_v1", input_size=224, paper="Howard et al. 2017", params=4_231_976,
                gmacs=0.5687, paper_params=4_200_000, paper_macs=0.569)  # fmt: skip
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    """MobileNet v1 (1.0 MobileNet-224 at ``width_mult=1``)."""
    return MobileNetV1(**kwargs)


@register_model("mobilenet_v2", input_size=224, paper="Sandler et al. 2018", params=3_504_872,
                gmacs=0.3008, paper_params=3_400_000, paper_macs=0.300,
                torchvision_twin="mobilenet_v2")  # fmt: skip
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNet v2 (1.0, 224)."""
    return MobileNetV2(**kwargs)
