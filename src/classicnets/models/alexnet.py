"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep convolutional
neural networks"), and torchvision's later "one weird trick" variant (Krizhevsky 2014).

The 2012 network, as the paper draws it (section 3.5, Figure 2), on a 227×227 crop:
conv1 96@11×11/4 → 55 → LRN → pool 3/2 → 27; conv2 256@5×5 (two GPUs) → LRN → pool → 13;
conv3 384@3×3 (across GPUs); conv4 384@3×3 and conv5 256@3×3 (two GPUs) → pool → 6×6×256;
fc6 4096 → fc7 4096 → fc8 1000. 60,965,224 parameters, 0.724 GMACs.

The paper says 224×224 inputs, but 11×11/4 windows only tile 227 (Caffe's ``crop_size: 227``).
A 224 crop works with ``conv1_padding=2`` (torchvision's choice): both give conv1 55×55.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import torch
from torch import Tensor, nn

from classicnets.models.registry import register_model

Activation = Literal["relu", "tanh"]
MiddleConv = Literal["conv2", "conv3", "conv4"]


def paper_lrn() -> nn.LocalResponseNorm:
    """Section 3.3: k=2, n=5, α=1e-4, β=0.75. PyTorch divides α by n, hence alpha=5e-4."""
    return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)


def _activation(name: Activation) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":  # section 3.1, Figure 1: the saturating unit that ReLUs train 6× faster than
        return nn.Tanh()
    raise ValueError(f"activation must be 'relu' or 'tanh', not {name!r}")


class AlexNet(nn.Module):
    """The 2012 network, with the paper's ablations as switches.

    Args:
        lrn: response normalisation after conv1 and conv2 (section 3.3: −1.4% / −1.2% top-1/top-5
            error).
        overlapping_pool: 3×3 windows with stride 2; False gives 2×2/2 (section 3.4: −0.4% / −0.3%).
            Both tile 55 → 27 → 13 → 6, so the classifier is the same size either way.
        activation: "relu" (section 3.1) or "tanh".
        groups: 2 splits conv2, conv4 and conv5 over the paper's two GPUs (section 3.2); 1 is dense.
        conv1_padding: 0 for 227 crops (Caffe), 2 for 224 crops (torchvision).
        dropout: drop probability on the outputs of fc6 and fc7 (section 4.2).
        conv6: "an extra sixth convolutional layer over the last pooling layer" (section 6, the
            "1 CNN*" of Table 2). The paper gives no shape; ours: 256@3×3, pad 1, dense, so the
            6×6×256 input of fc6 stays as it is. +590,080 parameters.
        without: a middle convolutional layer left out (section 7: "removing any of the middle
            layers results in a loss of about 2% for the top-1 performance"); the next one then
            reads its input (conv2: its LRN goes too, its pooling stays, so the sizes do).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        lrn: bool = True,
        overlapping_pool: bool = True,
        activation: Activation = "relu",
        groups: int = 2,
        conv1_padding: int = 0,
        dropout: float = 0.5,
        conv6: bool = False,
        without: MiddleConv | None = None,
    ) -> None:
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"groups must be 1 or 2 (the paper's two GPUs), not {groups}")
        if without not in (None, "conv2", "conv3", "conv4"):
            raise ValueError(f"without must be conv2, conv3 or conv4 (section 7), not {without!r}")

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, stride=2) if overlapping_pool else nn.MaxPool2d(2, stride=2)

        def norm() -> nn.Module:
            return paper_lrn() if lrn else nn.Identity()

        # conv3 reads the kernel maps of both GPUs (section 3.5), so it is never grouped.
        after_conv2 = 96 if without == "conv2" else 256
        after_conv3 = after_conv2 if without == "conv3" else 384
        layers = [
            ("conv1", nn.Conv2d(in_channels, 96, 11, stride=4, padding=conv1_padding)),
            ("act1", _activation(activation)), ("norm1", norm()), ("pool1", pool()),
            ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=groups)),
            ("act2", _activation(activation)), ("norm2", norm()), ("pool2", pool()),
            ("conv3", nn.Conv2d(after_conv2, 384, 3, padding=1)), ("act3", _activation(activation)),
            ("conv4", nn.Conv2d(after_conv3, 384, 3, padding=1, groups=groups)),
            ("act4", _activation(activation)),
            ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=groups)),
            ("act5", _activation(activation)), ("pool5", pool()),
        ]  # fmt: skip
        if without is not None:  # the layer, its activation (and for conv2 its LRN)
            gone = {without, f"act{without[-1]}"} | ({"norm2"} if without == "conv2" else set())
            layers = [(name, layer) for name, layer in layers if name not in gone]
        if conv6:
            layers += [("conv6", nn.Conv2d(256, 256, 3, padding=1)),
                       ("act_conv6", _activation(activation))]  # fmt: skip
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("act6", _activation(activation)),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)), ("act7", _activation(activation)),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))  # fmt: skip
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers
        ("accelerates the early stages of learning by providing the ReLUs with positive inputs"),
        0 in the others; conv6 (section 6, shape unstated) as conv4 and conv5 (ours)."""
        ones = {"conv2", "conv4", "conv5", "conv6", "fc6", "fc7"}
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.constant_(module.bias, 1.0 if name.split(".")[-1] in ones else 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class AlexNetOWT(nn.Module):
    """AlexNet as in "One weird trick for parallelizing CNNs" (Krizhevsky 2014), torchvision's
    ``alexnet``: 64-192-384-256-256 filters, no LRN, no groups, dropout before fc6 and fc7.

    Layer for layer the same modules as torchvision, so its state_dict loads directly."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # identity at 224; torchvision keeps it
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# params and GMACs are ours; the 2012 paper says "60 million parameters" and gives no MACs, the
# 2014 note neither.
@register_model("alexnet", input_size=227, paper="Krizhevsky et al. 2012", params=60_965_224,
                gmacs=0.724, paper_params=60_000_000)  # fmt: skip
def alexnet(**kwargs: Any) -> AlexNet:
    """AlexNet as published in 2012 (LRN, overlapping pools, two-GPU groups)."""
    return AlexNet(**kwargs)


@register_model("alexnet_owt", input_size=224, paper="Krizhevsky 2014 (one weird trick)",
                params=61_100_840, gmacs=0.714, torchvision_twin="alexnet")  # fmt: skip
def alexnet_owt(**kwargs: Any) -> AlexNetOWT:
    """torchvision's AlexNet, the 2014 single-tower variant."""
    return AlexNetOWT(**kwargs)
