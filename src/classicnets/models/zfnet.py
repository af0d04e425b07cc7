"""ZFNet (Zeiler & Fergus 2013, "Visualizing and understanding convolutional networks"), Figure 3.

AlexNet with the first layers repaired after looking at them (section 4.1): conv1 7×7 stride 2
instead of 11×11 stride 4, conv2 stride 2, and no two-GPU split. On a 224×224 crop:
conv1 96@7×7/2 → 110 → pool 3/2 → 55 → norm; conv2 256@5×5/2 → 26 → pool → 13 → norm;
conv3 384, conv4 384, conv5 256 @3×3/1 → pool → 6×6×256; fc6 4096 → fc7 4096 → fc8 1000.
62,357,608 parameters, 1.168 GMACs.

The paper states no padding. conv1 pad 1 with ceil-mode pooling (as Caffe pools) reproduces
Figure 3's map sizes, 110 → 55 → 26 → 13 → 6.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor, nn

from classicnets.models.alexnet import paper_lrn
from classicnets.models.registry import register_model


class ZFNet(nn.Module):
    """ZFNet, the single network of Table 2 ("Our replication of Krizhevsky et al." + section 4.1
    changes), with contrast normalisation as AlexNet's LRN."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # Figure 3 draws pooling before normalisation in layers 1 and 2 (AlexNet normalises first).
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 96, 7, stride=2, padding=1)),
            ("relu1", nn.ReLU(inplace=True)), ("pool1", pool()), ("norm1", paper_lrn()),
            ("conv2", nn.Conv2d(96, 256, 5, stride=2)),
            ("relu2", nn.ReLU(inplace=True)), ("pool2", pool()), ("norm2", paper_lrn()),
            ("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu3", nn.ReLU(inplace=True)),
            ("conv4", nn.Conv2d(384, 384, 3, padding=1)), ("relu4", nn.ReLU(inplace=True)),
            ("conv5", nn.Conv2d(384, 256, 3, padding=1)), ("relu5", nn.ReLU(inplace=True)),
            ("pool5", pool()),
        ]))  # fmt: skip
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("relu6", nn.ReLU(inplace=True)),
            ("drop6", nn.Dropout(dropout)),  # section 3: dropout 0.5 in layers 6 and 7
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU(inplace=True)),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))  # fmt: skip
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Section 3: "All weights are initialized to 10^-2 and biases are set to 0", read as
        N(0, 0.01) as in AlexNet (a constant 0.01 would make every filter the same)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# params and GMACs are ours: the paper states neither.
@register_model("zfnet", input_size=224, paper="Zeiler & Fergus 2013", params=62_357_608,
                gmacs=1.168)  # fmt: skip
def zfnet(**kwargs: Any) -> ZFNet:
    """ZFNet as in Figure 3; train with ``callbacks.FilterRenorm(0.1)``."""
    return ZFNet(**kwargs)
