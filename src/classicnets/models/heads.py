"""Global average pooling in place of flattening, for the networks whose classifier flattens a
fixed-size feature map (LeNet-5, AlexNet, ZFNet).

LeCun et al. 1998 note (section II) that a convolutional network can be replicated over a larger
input; Lin et al. 2014 ("Network in network") average each feature map over space before the
classifier, so one network takes any input size. Here the first fully-connected layer then reads
one value per channel. VGG needs no switch: it runs its FC layers as convolutions on larger
inputs (dense evaluation, VGG section 3.2).
"""

from __future__ import annotations

import torch
from torch import nn


def _child(net: nn.Module, qualified: str) -> tuple[nn.Module, str]:
    parent, _, name = qualified.rpartition(".")
    return (net.get_submodule(parent) if parent else net), name


class HeadError(ValueError):
    """A head switch that the network cannot take (a user error: one line, exit 2)."""


def global_average_head(net: nn.Module) -> nn.Module:
    """``net`` with its ``nn.Flatten`` replaced by a global average pool and flatten, and the
    first ``nn.Linear`` after it reading the last convolution's channels; changed in place.

    The resized layer keeps its bias and draws its weights from N(0, σ²), σ the standard
    deviation of the weights it replaces (the paper's N(0, 0.01) for AlexNet and ZFNet)."""
    modules = list(net.named_modules())
    flatten_at = next((i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Flatten)), None)
    if flatten_at is None:
        raise HeadError(
            f"model.net.gap_head=true: {type(net).__name__} has no nn.Flatten to replace by global "
            "average pooling (VGG evaluates any input size densely; GoogLeNet, ResNet and later "
            "already pool)"
        )
    convs = [m for _, m in modules[:flatten_at] if isinstance(m, nn.Conv2d)]
    fc_name, fc = next((n, m) for n, m in modules[flatten_at:] if isinstance(m, nn.Linear))
    channels = convs[-1].out_channels
    parent, name = _child(net, modules[flatten_at][0])
    setattr(parent, name, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    if fc.in_features != channels:
        resized = nn.Linear(channels, fc.out_features, bias=fc.bias is not None)
        with torch.no_grad():
            if not fc.weight.is_meta:  # (a network built on the meta device has no values)
                resized.weight.normal_(0.0, float(fc.weight.std()))
            if fc.bias is not None:
                resized.bias.copy_(fc.bias)
        parent, name = _child(net, fc_name)
        setattr(parent, name, resized)
    return net
