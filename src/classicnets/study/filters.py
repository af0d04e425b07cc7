"""A first layer's kernels as a grid of colour patches (AlexNet Figure 3, ZFNet Figure 6), and how
colour-specific each group of them is.

AlexNet's two GPUs each read half of conv1's kernels (conv2 is split in two groups), and the paper
notes (section 6.1) that "the kernels on GPU 1 are largely color-agnostic, while the kernels on
GPU 2 are largely color-specific". The figure here is the share of a kernel's energy that its
three colour channels do not have in common: 0 for the same pattern in R, G and B (a grey kernel),
higher for a kernel that responds to colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from classicnets.models.layers import find_layer
from classicnets.run.checks import ConfigValueError

GAP = 255  # the grid's background; patches use 0..PATCH_MAX, so the two never meet
PATCH_MAX = 230


def find_conv(net: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """The convolution named ``layer`` (a module path such as ``features.conv1`` or just
    ``conv1``), by default the network's first."""
    if layer is not None:
        return find_layer(net, layer, nn.Conv2d)  # type: ignore[return-value]
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigValueError("layer", layer, "the network has no convolution to draw")
    return convs[0]


@dataclass(frozen=True)
class KernelFigure:
    """A convolution's kernels drawn as :func:`kernel_grid` draws them, with their figures."""

    name: str  # the convolution's module path
    conv: nn.Conv2d
    groups: int  # how many groups the next convolution reads (AlexNet: its 2 GPUs)
    grid: np.ndarray  # (H, W, 3) uint8
    specificity: list[float]  # per group: mean colour specificity

    @classmethod
    def of(cls, net: nn.Module, layer: str | None = None) -> KernelFigure:
        """The figure of the convolution named ``layer`` (default: the first) of ``net``."""
        name, conv = find_conv(net, layer)
        groups = reading_groups(net, conv)
        grid = kernel_grid(conv.weight, groups)
        return cls(name, conv, groups, grid, group_specificity(conv.weight, groups))


def reading_groups(net: nn.Module, conv: nn.Conv2d) -> int:
    """Into how many groups the next convolution splits ``conv``'s kernels (AlexNet: 2 GPUs)."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    index = next(i for i, m in enumerate(convs) if m is conv)
    following = convs[index + 1] if index + 1 < len(convs) else None
    if following is not None and following.in_channels == conv.out_channels:
        return following.groups
    return 1


def colour_specificity(weight: Tensor) -> Tensor:
    """Per kernel (out, 3, k, k): the share of its energy not common to its colour channels."""
    centred = weight - weight.mean(dim=(2, 3), keepdim=True)
    grey = centred.mean(dim=1, keepdim=True)
    total = centred.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-12)
    return (centred - grey).pow(2).sum(dim=(1, 2, 3)) / total


def kernel_grid(weight: Tensor, groups: int = 1, columns: int = 16, scale: int = 4) -> np.ndarray:
    """(H, W, 3) uint8: each kernel a patch (contrast-stretched on its own, pixels ``scale``×),
    1-pixel gaps between patches, each group a block of its own below the previous."""
    weight = weight.detach().float().cpu()
    if weight.shape[1] == 1:
        weight = weight.expand(-1, 3, -1, -1)  # one channel (LeNet-5): grey patches
    weight = weight[:, :3]
    low = weight.amin(dim=(1, 2, 3), keepdim=True)
    high = weight.amax(dim=(1, 2, 3), keepdim=True)
    patches = ((weight - low) / (high - low).clamp_min(1e-12) * PATCH_MAX).round().byte()
    patches = patches.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    n, _, side, _ = patches.shape
    per_group = n // groups
    columns = min(columns, per_group)
    rows = -(-per_group // columns)
    cell = side + 1
    block_height, block_gap = rows * cell + 1, max(2, side // 4)
    height = groups * block_height + (groups - 1) * block_gap
    grid = np.full((height, columns * cell + 1, 3), GAP, dtype=np.uint8)
    for i in range(n):
        group, j = divmod(i, per_group)
        y = group * (block_height + block_gap) + (j // columns) * cell + 1
        x = (j % columns) * cell + 1
        grid[y : y + side, x : x + side] = patches[i].permute(1, 2, 0).numpy()
    return grid


def group_specificity(weight: Tensor, groups: int) -> list[float]:
    """Mean colour specificity of each group's kernels."""
    scores = colour_specificity(weight.detach().float()[:, :3])
    return [float(chunk.mean()) for chunk in torch.chunk(scores, groups)]
