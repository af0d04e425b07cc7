"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going deeper with convolutions"), Table 1 and
Figure 3, and torchvision's BatchNorm re-implementation of it.

The paper network on a 224×224 crop: conv 7×7/2 64 → 112 → pool 3/2 → 56 → LRN → conv 1×1 64 →
conv 3×3 192 → LRN → pool → 28; inception 3a 3b → pool → 14; 4a–4e → pool → 7; 5a 5b →
7×7 average pool → dropout 0.4 → linear. Pools are Caffe's ceil mode. Auxiliary classifiers
(section 5) sit on 4a and 4d and exist only in training: the network returns
``(main, aux1, aux2)`` in training mode and the main logits in eval mode.

torchvision's ``googlenet`` differs: BatchNorm after every conv, no LRN, a 3×3 kernel in the
"5×5" branch (pytorch/vision#906), a 2×2 pool before 5a, adaptive 4×4 aux pooling and dropout 0.2.
``googlenet_bn`` is that network, module for module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models.registry import register_model


def caffe_lrn() -> nn.LocalResponseNorm:
    """The paper names LRN without its constants; Caffe's bvlc_googlenet (train_val.prototxt,
    ``local_size: 5, alpha: 0.0001, beta: 0.75``, Caffe's default ``k: 1``) computes
    a / (1 + α/n Σ a²)^β, which is PyTorch's layer with the same numbers (both divide α by n).
    AlexNet's layer (k = 2, α undivided) is ``alexnet.paper_lrn``."""
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class GoogLeNetStyle:
    """Where the paper's network and torchvision's differ."""

    batch_norm: bool  # BN (eps 1e-3) after every conv and no conv bias, instead of conv biases
    lrn: bool  # LRN after the first pool and after the 3×3 stem conv
    kernel_5x5: int  # kernel of the "5×5" branch
    pool4_kernel: int  # max pool before 5a (stride 2, ceil mode; 14 → 7 either way)
    aux_pool: Literal["fixed", "adaptive"]  # 5×5/3 average pool, or adaptive to 4×4
    dropout: float  # before the final linear layer


PAPER_STYLE = GoogLeNetStyle(
    batch_norm=False, lrn=True, kernel_5x5=5, pool4_kernel=3, aux_pool="fixed", dropout=0.4
)
TORCHVISION_STYLE = GoogLeNetStyle(
    batch_norm=True, lrn=False, kernel_5x5=3, pool4_kernel=2, aux_pool="adaptive", dropout=0.2
)


class BasicConv2d(nn.Module):
    """conv → (BN) → ReLU; every convolution of GoogLeNet, including those inside inceptions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            bias=not batch_norm,
        )  # fmt: skip
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Figure 2(b): 1×1, 1×1 → 3×3, 1×1 → 5×5 and 3×3 max pool → 1×1, concatenated."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        style: GoogLeNetStyle = PAPER_STYLE,
    ) -> None:
        super().__init__()
        bn, k5 = style.batch_norm, style.kernel_5x5
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, batch_norm=bn)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, 1, batch_norm=bn),
            BasicConv2d(ch3x3red, ch3x3, 3, padding=1, batch_norm=bn),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, 1, batch_norm=bn),
            BasicConv2d(ch5x5red, ch5x5, k5, padding=k5 // 2, batch_norm=bn),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, 1, batch_norm=bn),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Section 5: average pool 5×5/3 (4×4×512 on 4a) → 1×1 conv 128 + ReLU → FC 1024 + ReLU →
    dropout 0.7 → linear. Its loss is weighted 0.3 (config: ``model.aux_loss_weights``)."""

    def __init__(
        self, in_channels: int, num_classes: int, style: GoogLeNetStyle = PAPER_STYLE
    ) -> None:
        super().__init__()
        self.pool: nn.Module = (
            nn.AvgPool2d(5, stride=3) if style.aux_pool == "fixed" else nn.AdaptiveAvgPool2d(4)
        )
        self.conv = BasicConv2d(in_channels, 128, 1, batch_norm=style.batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(0.7)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.pool(x)).flatten(1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(nn.Module):
    """GoogLeNet in the paper's style or torchvision's; module names follow torchvision."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        aux_logits: bool = True,
        style: GoogLeNetStyle = PAPER_STYLE,
    ) -> None:
        super().__init__()
        bn = style.batch_norm
        self.aux_logits = aux_logits
        self.conv1 = BasicConv2d(in_channels, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1: nn.Module = caffe_lrn() if style.lrn else nn.Identity()
        self.conv2 = BasicConv2d(64, 64, 1, batch_norm=bn)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, batch_norm=bn)
        self.lrn2: nn.Module = caffe_lrn() if style.lrn else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = 192
        for name, widths in INCEPTION_TABLE.items():
            block = Inception(channels, *widths, style=style)
            self.add_module(f"inception{name}", block)
            channels = block.out_channels
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            if name == "4e":
                self.maxpool4 = nn.MaxPool2d(style.pool4_kernel, stride=2, ceil_mode=True)

        self.aux1 = InceptionAux(512, num_classes, style) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, style) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 7×7/1 average pool at 224
        self.dropout = nn.Dropout(style.dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.reset_parameters(style)

    def reset_parameters(self, style: GoogLeNetStyle) -> None:
        """The paper gives no init. Paper style: Caffe's bvlc_googlenet fill-in — "xavier" weights
        (Caffe's: U(±√(3/fan_in))), biases 0.2 except the classifiers' 0. torchvision style:
        torchvision's truncated N(0, 0.01)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                if style.batch_norm:
                    nn.init.trunc_normal_(module.weight, std=0.01, a=-2.0, b=2.0)
                    continue
                nn.init.kaiming_uniform_(module.weight, nonlinearity="linear")
                classifier = name == "fc" or name.endswith(".fc2")
                nn.init.constant_(module.bias, 0.0 if classifier else 0.2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.lrn1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.lrn2(x)
        x = self.maxpool2(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        with_aux = self.training and self.aux1 is not None and self.aux2 is not None
        aux1 = self.aux1(x) if with_aux else None  # section 5: on top of 4a
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        aux2 = self.aux2(x) if with_aux else None  # and on top of 4d
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        x = torch.flatten(self.avgpool(x), 1)
        x = self.fc(self.dropout(x))
        if aux1 is not None and aux2 is not None:
            return x, aux1, aux2
        return x


# params (without the auxiliary heads) and GMACs are ours. The paper: Table 1's parameter column
# sums to about 6.8M, and section 5 budgets "1.5 billion multiply-adds at inference time".
@register_model("googlenet", input_size=224, paper="Szegedy et al. 2014", params=6_998_552,
                gmacs=1.583, paper_params=6_800_000, paper_macs=1.5)  # fmt: skip
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet as published (LRN, true 5×5 branches, no BN); aux heads on 4a and 4d."""
    return GoogLeNet(style=PAPER_STYLE, **kwargs)


@register_model("googlenet_bn", input_size=224, paper="Szegedy et al. 2014 (+BN, torchvision)",
                params=6_624_904, gmacs=1.498, torchvision_twin="googlenet")  # fmt: skip
def googlenet_bn(**kwargs: Any) -> GoogLeNet:
    """torchvision's GoogLeNet (BN, no LRN, 3×3 "5×5" branch)."""
    return GoogLeNet(style=TORCHVISION_STYLE, **kwargs)
