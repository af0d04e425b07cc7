"""VGG (Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image
recognition"), configurations A, A-LRN, B, D and E of Table 1, and torchvision's BN variants.

Every conv is 3×3 stride 1 pad 1 + ReLU; "M" is a 2×2/2 max pool; "LRN" is AlexNet's response
normalisation (section 2.1: "the parameters for the LRN layer are those of Krizhevsky et al.").
The classifier is FC 4096 → FC 4096 → FC 1000 with dropout 0.5 after the first two (section 3.1).

Test-time "dense" evaluation (section 3.2) is built in: on inputs larger than 224 the FC layers run
as 7×7 and 1×1 convolutions and the class score map is averaged over space. At 224 the network is
exactly torchvision's (same modules, same names; torchvision's 7×7 adaptive pool is an identity).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models.alexnet import paper_lrn
from classicnets.models.registry import register_model

log = logging.getLogger(__name__)

Init = Literal["paper", "glorot"]
INIT_NAMES = {
    "paper": "N(0, 0.01), biases 0 (section 3.1)",
    "glorot": "Glorot uniform, biases 0 (the authors' note, section 3.1, final version)",
}

# Table 1, one list per column; numbers are conv widths.
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}  # fmt: skip


def make_layers(
    cfg: list[int | str], batch_norm: bool = False, in_channels: int = 3
) -> nn.Sequential:
    """The convolutional part of one Table 1 column (torchvision's layout, so names match)."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
        elif v == "LRN":
            layers.append(paper_lrn())
        else:
            assert isinstance(v, int)
            layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG column: ``features`` (convs and pools) and ``classifier`` (three FC layers).

    Args:
        init: "paper" — N(0, 0.01) weights, zero biases (section 3.1, see ``reset_parameters``);
            "glorot" — Glorot & Bengio's normalised uniform init, which the authors found after
            submission trains the deep nets without pre-training (section 3.1, last paragraph).
    """

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        *,
        init: Init = "paper",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )  # fmt: skip
        self.reset_parameters(init)

    def reset_parameters(self, init: Init = "paper") -> None:
        """Section 3.1 samples weights "from a normal distribution with the zero mean and 10^-2
        variance". Read literally (std 0.1) a VGG-11 starts with logits of std ~3e6 and a loss of
        ~1e7, which SGD at lr 0.01 cannot train; as a standard deviation (Caffe's gaussian filler,
        and AlexNet's N(0, 0.01)) the loss starts at ln(1000). We take the standard deviation."""
        if init not in ("paper", "glorot"):
            raise ValueError(f"init must be 'paper' or 'glorot', not {init!r}")
        log.info("VGG init: %s", INIT_NAMES[init])
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                if init == "paper":
                    nn.init.normal_(module.weight, 0.0, 0.01)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        if x.shape[-2:] == (7, 7):
            return self.classifier(x.flatten(1))
        return self._dense(x)

    def _dense(self, x: Tensor) -> Tensor:
        """Section 3.2: FC layers as convolutions (the first 7×7, the others 1×1) over a larger
        image, then the class score map averaged over space."""
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                k = round((layer.in_features / x.shape[1]) ** 0.5)
                weight = layer.weight.view(layer.out_features, x.shape[1], k, k)
                x = F.conv2d(x, weight, layer.bias)
            else:
                x = layer(x)
        return x.mean(dim=(2, 3))


def _conv_stages(features: nn.Sequential) -> list[list[str]]:
    """The names (indices in ``features``) of the convolutions of each stage, the runs between
    max pools."""
    stages: list[list[str]] = [[]]
    for name, layer in features.named_children():
        if isinstance(layer, nn.Conv2d):
            stages[-1].append(name)
        elif isinstance(layer, nn.MaxPool2d):
            stages.append([])
    return [stage for stage in stages if stage]


def config_a_layers(net: VGG) -> list[tuple[str, str]]:
    """Section 3.1's rule as (net A module, ``net`` module) name pairs: a deeper net starts from a
    trained net A's first four conv layers and its three FC layers.

    A's first four convs are 3→64 (stage 1), 64→128 (stage 2), 128→256 and 256→256 (stage 3);
    each goes to the same position in the same stage of the deeper net, the one place it fits.
    The FC layers have the same names in every column."""
    with torch.device("meta"):  # A's layout only: nothing allocated, nothing initialised
        features_a = make_layers(CFGS["A"])
    pairs: list[tuple[str, str]] = []
    for stage_a, stage in zip(_conv_stages(features_a), _conv_stages(net.features), strict=True):
        pairs += zip(stage_a, stage, strict=False)  # the deeper stage is longer
    convs = [(f"features.{a}", f"features.{b}") for a, b in pairs[:4]]
    fcs = [
        f"classifier.{n}" for n, m in net.classifier.named_children() if isinstance(m, nn.Linear)
    ]
    return convs + [(fc, fc) for fc in fcs]


def transfer_from_config_a(net_a: VGG, net: VGG) -> None:
    """Copy net A's layers into the deeper ``net`` by section 3.1's rule; the other layers keep
    their random init."""
    for src, dst in config_a_layers(net):
        net.get_submodule(dst).load_state_dict(net_a.get_submodule(src).state_dict())


def _vgg(cfg: str, batch_norm: bool, *, in_channels: int = 3, **kwargs: Any) -> VGG:
    return VGG(make_layers(CFGS[cfg], batch_norm, in_channels), **kwargs)


PAPER = "Simonyan & Zisserman 2014"
BN_PAPER = f"{PAPER} (+BN, torchvision)"


# One builder per variant (a column of Table 1). params and GMACs are ours (the BN variants'
# parameter counts are also torchvision's metadata); Table 2 gives millions (A and A-LRN share
# 133); the paper states no MACs. The BN variants are not the paper's.
@register_model(
    input_size=224,
    paper=PAPER,
    params=132_863_336,
    gmacs=7.609,
    paper_params=133_000_000,
    torchvision_twin="vgg11",
)
def vgg11(**kwargs: Any) -> VGG:
    return _vgg("A", False, **kwargs)


@register_model(
    input_size=224, paper=PAPER, params=132_863_336, gmacs=7.609, paper_params=133_000_000
)
def vgg11_lrn(**kwargs: Any) -> VGG:
    return _vgg("A-LRN", False, **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=133_047_848,
    gmacs=11.308,
    paper_params=133_000_000,
    torchvision_twin="vgg13",
)
def vgg13(**kwargs: Any) -> VGG:
    return _vgg("B", False, **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=138_357_544,
    gmacs=15.470,
    paper_params=138_000_000,
    torchvision_twin="vgg16",
)
def vgg16(**kwargs: Any) -> VGG:
    return _vgg("D", False, **kwargs)


@register_model(
    input_size=224,
    paper=PAPER,
    params=143_667_240,
    gmacs=19.632,
    paper_params=144_000_000,
    torchvision_twin="vgg19",
)
def vgg19(**kwargs: Any) -> VGG:
    return _vgg("E", False, **kwargs)


@register_model(
    input_size=224, paper=BN_PAPER, params=132_868_840, gmacs=7.609, torchvision_twin="vgg11_bn"
)
def vgg11_bn(**kwargs: Any) -> VGG:
    return _vgg("A", True, **kwargs)


@register_model(
    input_size=224, paper=BN_PAPER, params=133_053_736, gmacs=11.308, torchvision_twin="vgg13_bn"
)
def vgg13_bn(**kwargs: Any) -> VGG:
    return _vgg("B", True, **kwargs)


@register_model(
    input_size=224, paper=BN_PAPER, params=138_365_992, gmacs=15.470, torchvision_twin="vgg16_bn"
)
def vgg16_bn(**kwargs: Any) -> VGG:
    return _vgg("D", True, **kwargs)


@register_model(
    input_size=224, paper=BN_PAPER, params=143_678_248, gmacs=19.632, torchvision_twin="vgg19_bn"
)
def vgg19_bn(**kwargs: Any) -> VGG:
    return _vgg("E", True, **kwargs)
