"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C): the second-derivative
backpropagation against hand-written and exact second derivatives, the update rule, and LeNet-5
learning real digits with the paper's rates."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from classicnets.data.mnist import MNISTDataModule
from classicnets.models import get_model
from classicnets.models.lenet import Squash
from classicnets.optim import SDLM, diagonal_gauss_newton
from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config


class SquaredDistanceHead(nn.Module):
    """E = Σ_j (x_j − c_tj)², the y_D term of LeNet-5's criterion, as an output layer."""

    def __init__(self, centers: Tensor) -> None:
        super().__init__()
        self.register_buffer("centers", centers)

    def forward(self, x: Tensor) -> Tensor:
        return -torch.cdist(x, self.centers).pow(2)

    def input_curvature(self, x: Tensor, targets: Tensor) -> Tensor:
        return torch.full_like(x, 2.0)


@pytest.fixture
def two_layer_chain() -> tuple[nn.Sequential, Tensor, Tensor]:
    torch.manual_seed(0)
    head = SquaredDistanceHead(torch.randn(3, 4).sign())
    chain = nn.Sequential(nn.Linear(5, 6), Squash(), nn.Linear(6, 4), Squash(), head)
    return chain, torch.randn(7, 5), torch.randint(0, 3, (7,))


def test_matches_the_appendix_c_recursion_written_out(two_layer_chain) -> None:
    chain, x, targets = two_layer_chain
    first, second = chain[0], chain[2]
    a1 = first(x)
    x1 = Squash()(a1)
    a2 = second(x1)

    # Appendix C with the Gauss-Newton f'² and the boundary ∂²E/∂x² = 2, pattern by pattern;
    # f' from autograd, not from Squash.derivative
    def slope(a: Tensor) -> Tensor:
        a = a.detach().requires_grad_()
        return torch.autograd.grad(Squash()(a).sum(), a)[0]

    d2_a2 = slope(a2) ** 2 * 2.0
    d2_x1 = d2_a2 @ second.weight**2
    d2_a1 = slope(a1) ** 2 * d2_x1
    expected = {
        second.weight: d2_a2.T @ x1**2,
        second.bias: d2_a2.sum(0),
        first.weight: d2_a1.T @ x**2,
        first.bias: d2_a1.sum(0),
    }
    got = diagonal_gauss_newton(chain, x, targets)
    assert set(got) == set(expected)
    for param, value in expected.items():
        torch.testing.assert_close(got[param], value.detach())


def test_one_layer_equals_the_exact_diagonal_of_the_hessian() -> None:
    # With no hidden layer there is nothing to neglect: h_kk is ∂²E/∂w_k² exactly.
    torch.manual_seed(1)
    layer = nn.Linear(4, 3)
    centers = torch.randn(2, 3)
    x, targets = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    chain = nn.Sequential(layer, SquaredDistanceHead(centers))

    def loss(weight: Tensor) -> Tensor:
        return ((x @ weight.T + layer.bias - centers[targets]) ** 2).sum()

    exact = torch.autograd.functional.hessian(loss, layer.weight.detach())
    diagonal = exact.reshape(layer.weight.numel(), -1).diagonal().reshape(layer.weight.shape)
    torch.testing.assert_close(diagonal_gauss_newton(chain, x, targets)[layer.weight], diagonal)


def test_shared_weights_sum_over_their_connections() -> None:
    # eq. 21: a convolution weight collects x² from every position it is applied at.
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3)
    x = torch.randn(4, 2, 5, 5)
    chain = nn.Sequential(conv, nn.Flatten(), SquaredDistanceHead(torch.zeros(2, 27)))
    h = diagonal_gauss_newton(chain, x, torch.zeros(4, dtype=torch.long))
    patches = F.unfold(x, 3)  # (batch, 2·3·3, 9 positions)
    per_filter = 2.0 * patches.pow(2).sum(dim=(0, 2)).view(2, 3, 3)
    torch.testing.assert_close(h[conv.weight], per_filter.expand(3, 2, 3, 3))
    torch.testing.assert_close(h[conv.bias], torch.full((3,), 2.0 * 4 * 9))


def test_frozen_weights_still_count_squared_but_get_no_curvature(two_layer_chain) -> None:
    chain, x, targets = two_layer_chain
    everything = diagonal_gauss_newton(chain, x, targets)
    chain[2].weight.requires_grad_(False)
    frozen = diagonal_gauss_newton(chain, x, targets)
    assert chain[2].weight not in frozen
    torch.testing.assert_close(frozen[chain[0].weight], everything[chain[0].weight])
    optimizer = SDLM(chain.parameters())
    optimizer.set_curvature(frozen)  # the frozen weight is skipped, not a KeyError
    assert "curvature" not in optimizer.state[chain[2].weight]


def test_only_chains_of_known_layers_are_accepted() -> None:
    head = SquaredDistanceHead(torch.zeros(2, 2))
    x, targets = torch.randn(1, 2), torch.zeros(1, dtype=torch.long)
    with pytest.raises(TypeError, match="input_curvature"):
        diagonal_gauss_newton(nn.Sequential(nn.Linear(2, 2)), x, targets)
    with pytest.raises(TypeError, match="through ReLU"):  # not a weighted sum, no derivative
        diagonal_gauss_newton(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), head), x, targets)
    with pytest.raises(TypeError, match=r"LeNet5Modern is not an nn\.Sequential"):
        diagonal_gauss_newton(get_model("lenet5_modern"), torch.randn(1, 1, 32, 32), targets)


def test_lenet5_c3_and_s2_against_plain_convolutions() -> None:
    # C3 as one dense 16x6 convolution with zeros outside Table I, S2 as a depthwise 2x2 stride-2
    # convolution whose four taps equal the coefficient: the same network, built another way.
    torch.manual_seed(0)
    net = get_model("lenet5", init="sqrt_fan_in").double()
    c3 = nn.Conv2d(6, 16, 5).double()
    s2 = nn.Conv2d(6, 6, 2, stride=2, groups=6).double()
    with torch.no_grad():
        c3.weight.zero_()
        for k, conv, maps in zip(net.c3.sizes, net.c3.convs, net.c3.order, strict=True):
            reads = getattr(net.c3, f"gather{k}").view(len(maps), k)
            for group, out_map in enumerate(maps):
                c3.weight[out_map, reads[group]] = conv.weight[group]
                c3.bias[out_map] = conv.bias[group]
        s2.weight.copy_(net.s2.weight.view(6, 1, 1, 1).expand(6, 1, 2, 2))
        s2.bias.copy_(net.s2.bias)
    layers = list(net)
    layers[2], layers[4] = s2, c3
    plain = nn.Sequential(*layers)
    x, targets = torch.randn(3, 1, 32, 32, dtype=torch.float64), torch.tensor([1, 4, 7])
    torch.testing.assert_close(plain(x), net(x))
    ours, theirs = diagonal_gauss_newton(net, x, targets), diagonal_gauss_newton(plain, x, targets)
    for k, conv, maps in zip(net.c3.sizes, net.c3.convs, net.c3.order, strict=True):
        reads = getattr(net.c3, f"gather{k}").view(len(maps), k)
        for group, out_map in enumerate(maps):
            torch.testing.assert_close(
                ours[conv.weight][group], theirs[c3.weight][out_map, reads[group]]
            )
            torch.testing.assert_close(ours[conv.bias][group], theirs[c3.bias][out_map])
    # one coefficient, four connections: eq. 21 sums them
    torch.testing.assert_close(ours[net.s2.weight], theirs[s2.weight].sum(dim=(1, 2, 3)))
    torch.testing.assert_close(ours[net.s2.bias], theirs[s2.bias])
    torch.testing.assert_close(ours[net.c1.weight], theirs[net.c1.weight])


def test_update_is_eta_over_mu_plus_h_times_the_gradient() -> None:
    weight = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    optimizer = SDLM([weight], lr=0.1, mu=0.5)
    weight.grad = torch.tensor([1.0, 1.0, -2.0])
    with pytest.raises(RuntimeError, match="set_curvature"):
        optimizer.step()
    optimizer.set_curvature({weight: torch.tensor([0.0, 0.5, 1.5])})
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.tensor([1 - 0.2, 2 - 0.1, 3 + 0.1]))
    # the curvature is optimizer state: it travels in checkpoints
    restored = SDLM([weight], lr=0.1, mu=0.5)
    restored.load_state_dict(optimizer.state_dict())
    torch.testing.assert_close(restored.state[weight]["curvature"], torch.tensor([0.0, 0.5, 1.5]))
    with pytest.raises(ValueError, match="mu > 0"):
        SDLM([weight], mu=0.0)


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[Tensor, Tensor]]:
    data = MNISTDataModule(distortions=False)
    data.setup()
    return {split: data.splits[split].tensors for split in ("train", "val")}


def rates_at_init(init: str, digits, eta: float = 5e-4, mu: float = 0.02) -> Tensor:
    torch.manual_seed(0)
    net = get_model("lenet5", init=init)
    images, labels = digits["train"]
    h = diagonal_gauss_newton(net, images[:500], labels[:500])
    return torch.cat([eta / (mu + v.flatten() / 500) for v in h.values()])


def test_lenet5_effective_rates_at_init_with_each_init(digits) -> None:
    # Section III.A quotes rates "between approximately 7e-5 and 0.016" at η = 5e-4, μ = 0.02,
    # below the cap η/μ = 0.025 that a parameter with h_kk ≈ 0 gets.
    cap = 5e-4 / 0.02
    printed = rates_at_init("fan_in", digits)
    assert printed.median() > 0.8 * cap  # Appendix A's ±2.4/fan_in: most h_kk far below μ
    ours = rates_at_init("sqrt_fan_in", digits)
    assert ours.max() < 0.016 and ours.min() < 7e-5  # the recipe's init: no parameter at the cap


def test_lenet5_learns_digits_pattern_by_pattern_at_the_papers_rate(digits) -> None:
    torch.manual_seed(0)
    net = get_model("lenet5", init="sqrt_fan_in")
    images, labels = digits["train"]
    optimizer = SDLM(net.parameters(), lr=5e-4, mu=0.02)  # passes 1-2 of section III.A
    h = diagonal_gauss_newton(net, images[:500], labels[:500])
    optimizer.set_curvature({p: v / 500 for p, v in h.items()})
    for i in range(600):
        optimizer.zero_grad()
        F.cross_entropy(net(images[i : i + 1]), labels[i : i + 1]).backward()
        optimizer.step()
    val_images, val_labels = digits["val"]
    with torch.no_grad():
        accuracy = (net(val_images).argmax(1) == val_labels).float().mean().item()
    assert accuracy > 0.7  # chance is 0.1; 600 patterns, one sixth of a pass


def test_the_recipe_reestimates_the_curvature_before_every_pass(tmp_path: Path, train_main) -> None:
    overrides = [
        "logger=csv",
        "test=false",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "callbacks.sdlm_curvature.samples=50",
        "model.scheduler.table=[[1,5e-4],[3,2e-4]]",
    ]
    train_main(compose_config("train", overrides, tmp_path))
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    rates = [
        (float(r["sdlm/rate_min"]), float(r["sdlm/rate_max"])) for r in rows if r["sdlm/rate_max"]
    ]
    assert len(rates) == 3  # one estimate per pass
    assert len(set(rates)) == 3  # re-estimated on the weights of that pass
    for (low, high), eta in zip(rates, (5e-4, 5e-4, 2e-4), strict=True):
        assert 0 < low < high <= eta / 0.02  # η / (μ + h) with h >= 0
    state = load_file(tmp_path / "checkpoints" / "last.ckpt")  # SDLM state is plain data
    curvatures = [s["curvature"] for s in state["optimizer_states"][0]["state"].values()]
    assert len(curvatures) == 16 and all((h >= 0).all() and h.sum() > 0 for h in curvatures)
