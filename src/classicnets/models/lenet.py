"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", section II.B), and the common modern variant (ReLU, max pooling, linear output).

The 1998 network, as the paper draws it (input 32×32):
C1 6@28×28 → S2 6@14×14 → C3 16@10×10 (sparse table) → S4 16@5×5 → C5 120 → F6 84 → RBF 10.
Trainable parameters: 156 + 12 + 1,516 + 32 + 48,120 + 10,164 = 60,000.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.models.registry import register_model

# Table I of the paper: which S2 maps each C3 map reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

# 7×12 bitmaps of the ten digits, drawn side by side: the fixed ±1 weights of the RBF output
# units (Fig. 3, drawn after the paper's figure; '#' is +1, '.' is -1).
_BITMAP_ROWS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... .#####. .#####. ....#.. ####### ..####. ####### .#####. .#####.
.#...#. ..##... #.....# #.....# ...##.. #...... .#..... ......# #.....# #.....#
#.....# .#.#... ......# ......# ..#.#.. #...... #...... .....#. #.....# #.....#
#.....# ...#... .....#. ......# .#..#.. ######. #.####. ....#.. #.....# #.....#
#.....# ...#... ....#.. ..####. #...#.. ......# ##....# ...#... .#####. .######
#.....# ...#... ...#... ......# ####### ......# #.....# ..#.... #.....# ......#
#.....# ...#... ..#.... ......# ....#.. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... .#..... #.....# ....#.. #.....# #.....# ..#.... #.....# .....#.
..###.. .#####. ####### .#####. ....#.. .#####. .#####. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""
DIGIT_BITMAPS: tuple[str, ...] = tuple(
    "".join(row.split()[digit] for row in _BITMAP_ROWS.strip().splitlines()) for digit in range(10)
)  # 84 characters per digit, row-major


SQUASH_AMPLITUDE, SQUASH_SLOPE = 1.7159, 2.0 / 3.0  # Appendix A: A and S


def squash(x: Tensor) -> Tensor:
    """The paper's sigmoid, f(a) = A tanh(S a) with A = 1.7159, S = 2/3 (Appendix A)."""
    return SQUASH_AMPLITUDE * torch.tanh(x * SQUASH_SLOPE)


class Squash(nn.Module):
    """``squash`` as a layer, with the derivative that the second-derivative pass needs."""

    def forward(self, x: Tensor) -> Tensor:
        return squash(x)

    @staticmethod
    def derivative(a: Tensor) -> Tensor:
        """f'(a) = A S (1 - tanh²(S a))."""
        return SQUASH_AMPLITUDE * SQUASH_SLOPE * (1 - torch.tanh(a * SQUASH_SLOPE).square())


class Subsampling(nn.Module):
    """S2/S4: each unit adds its 2×2 inputs, multiplies by a trainable coefficient and adds a
    trainable bias, one pair per feature map (section II.B)."""

    sums_weighted_inputs = True  # a weighted sum of its inputs: SDLM's second-derivative pass

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        summed = F.avg_pool2d(x, 2) * 4.0
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SparseC3(nn.Module):
    """C3: 16 maps of 5×5 kernels, each reading only the S2 maps its row of Table I names.

    Maps that read the same number of inputs share one grouped convolution over the gathered
    channels, so the layer holds exactly the paper's 1,516 parameters."""

    sums_weighted_inputs = True  # a weighted sum of its inputs: SDLM's second-derivative pass

    def __init__(self, table: tuple[tuple[int, ...], ...] = C3_TABLE) -> None:
        super().__init__()
        sizes = sorted({len(row) for row in table})
        self.order: list[list[int]] = [
            [i for i, r in enumerate(table) if len(r) == k] for k in sizes
        ]
        self.convs = nn.ModuleList()
        for k, maps in zip(sizes, self.order, strict=True):
            gather = torch.tensor([c for m in maps for c in table[m]])
            self.register_buffer(f"gather{k}", gather, persistent=False)
            self.convs.append(nn.Conv2d(k * len(maps), len(maps), 5, groups=len(maps)))
        self.sizes = sizes
        # Position of each output map after concatenating the groups, to restore Table I order.
        concat_order = [m for maps in self.order for m in maps]
        self.register_buffer(
            "restore",
            torch.tensor([concat_order.index(m) for m in range(len(table))]),
            persistent=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        outs = [
            conv(x[:, getattr(self, f"gather{k}")])
            for k, conv in zip(self.sizes, self.convs, strict=True)
        ]
        return torch.cat(outs, dim=1)[:, self.restore]


class EuclideanRBF(nn.Module):
    """Output layer: y_i = Σ_j (x_j − w_ij)², with fixed ±1 weights (section II.B, eq. 7).

    Returns −y as logits, so cross-entropy on them is the paper's MAP criterion (eq. 9) without the
    constant e^{−j} term. Classes beyond the ten digit bitmaps get fixed random ±1 codes."""

    def __init__(self, in_features: int = 84, num_classes: int = 10) -> None:
        super().__init__()
        codes = [[1.0 if ch == "#" else -1.0 for ch in bitmap] for bitmap in DIGIT_BITMAPS]
        codes = codes[:num_classes]
        if num_classes > len(codes):
            gen = torch.Generator().manual_seed(0)
            extra = torch.randint(0, 2, (num_classes - len(codes), in_features), generator=gen)
            codes += (extra.float() * 2 - 1).tolist()
        self.register_buffer("centers", torch.tensor(codes))

    def forward(self, x: Tensor) -> Tensor:
        # The direct difference at every batch size: cdist's default switches to a matrix
        # product above 25 rows (less exact, and torch.export would fix the batch at <= 25).
        distances = torch.cdist(x, self.centers, compute_mode="donot_use_mm_for_euclid_dist")
        return -distances.pow(2)

    def input_curvature(self, x: Tensor, targets: Tensor) -> Tensor:
        """∂²E/∂x_j² of the criterion's y_D term, Σ_j (x_j − w_Dj)²: 2 for every input, the
        boundary condition of the second-derivative backpropagation (Appendix C).

        The competitive term of eq. 9 is left out, as the Gauss-Newton approximation leaves out
        what is not a sum of squares: its curvature (4 Var_p(w_ij) for cross-entropy on −y)
        vanishes on confidently classified patterns, where the step size would then grow to the
        cap η/μ; y_D's keeps the steps bounded by the distance criterion of eq. 8."""
        return torch.full_like(x, 2.0)


Init = Literal["fan_in", "sqrt_fan_in"]


class LeNet5(nn.Sequential):
    """LeNet-5 as published in 1998: scaled tanh, trainable subsampling, C3 table, RBF output.

    A plain chain of layers, as Fig. 2 draws it, so that the stochastic diagonal Levenberg-Marquardt
    optimizer can backpropagate second derivatives through it (``classicnets.optim.sdlm``).

    ``init`` draws the weights and biases of C1, C3, C5 and F6 uniformly in ±b (the subsampling
    coefficients start at 1, the plain 2×2 sum):
    ``"fan_in"``: b = 2.4 / F, as Appendix A prints it (F: the unit's fan-in);
    ``"sqrt_fan_in"``: b = sqrt(3 / F), standard deviation F^-1/2, the rule of LeCun, Bottou, Orr &
    Müller 1998, "Efficient BackProp", section 4.6, for this same squash.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, init: Init = "fan_in") -> None:
        super().__init__(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, 5), c1_squash=Squash(),
                s2=Subsampling(6), s2_squash=Squash(),
                c3=SparseC3(), c3_squash=Squash(),
                s4=Subsampling(16), s4_squash=Squash(),
                c5=nn.Conv2d(16, 120, 5), c5_squash=Squash(),
                flatten=nn.Flatten(),
                f6=nn.Linear(120, 84), f6_squash=Squash(),
                output=EuclideanRBF(84, num_classes),
            )
        )  # fmt: skip
        self.reset_parameters(init)

    def __getitem__(self, index: int | slice) -> nn.Module:
        if isinstance(index, slice):  # nn.Sequential would rebuild a LeNet5 from the slice
            return nn.Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def reset_parameters(self, init: Init = "fan_in") -> None:
        bounds = {
            "fan_in": lambda fan_in: 2.4 / fan_in,
            "sqrt_fan_in": lambda fan_in: math.sqrt(3 / fan_in),
        }
        if init not in bounds:
            raise ValueError(f"unknown LeNet-5 init {init!r}; choose one of {sorted(bounds)}")
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                bound = bounds[init](module.weight[0].numel())
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.uniform_(module.bias, -bound, bound)


class LeNet5Modern(nn.Module):
    """The LeNet-5 that courses teach today: ReLU, 2×2 max pooling, dense C3, linear classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# params are ours, counted; section II.B gives LeNet-5's 60,000 trainable parameters (the RBF is
# fixed). MACs: 325,680 for LeNet-5 (the paper counts 340,908 connections, biases included).
@register_model("lenet5", input_size=32, paper="LeCun et al. 1998", params=60_000,
                gmacs=0.000326, paper_params=60_000)  # fmt: skip
def lenet5(**kwargs: Any) -> LeNet5:
    """LeNet-5, the 1998 form, 32×32 input."""
    return LeNet5(**kwargs)


@register_model("lenet5_modern", input_size=32, paper="LeCun et al. 1998 (modern variant)",
                params=61_706, gmacs=0.000417)  # fmt: skip
def lenet5_modern(**kwargs: Any) -> LeNet5Modern:
    """LeNet-5 with ReLU, max pooling, a dense C3 and a linear output."""
    return LeNet5Modern(**kwargs)
