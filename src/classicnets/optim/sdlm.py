"""Stochastic diagonal Levenberg-Marquardt (LeCun, Bottou, Bengio & Haffner 1998, Appendix C).

Each parameter w_k gets its own step size ε_k = η / (μ + h_kk), where h_kk estimates ∂²E/∂w_k²,
the diagonal of the Gauss-Newton approximation of the Hessian. The paper computes h_kk by
backpropagating second derivatives the way gradients are backpropagated:

- ∂²E/∂a_i² = f'(a_i)² ∂²E/∂x_i²              (the f'' term dropped: Gauss-Newton)
- ∂²E/∂x_j² = Σ_i w_ij² ∂²E/∂a_i²
- ∂²E/∂w_k² ≈ Σ_{(i,j) ∈ V_k} ∂²E/∂a_i² x_j²  (summed over the connections V_k that share w_k,
  cross terms neglected)

For a layer whose outputs are sums of weight × input (a convolution, a fully connected or a
subsampling layer), the last two lines are exactly that layer's backward pass run with squared
weights on squared inputs, so ``diagonal_gauss_newton`` gets them from autograd instead of
hand-written per-layer code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.optim import Optimizer

from classicnets.run import compat

# Layers whose outputs are sums of weight × input (or plain reshapes). Other layers opt in with a
# true ``sums_weighted_inputs`` attribute; pointwise activations declare ``derivative(a)``.
WEIGHTED_SUM_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Flatten, nn.Identity)


def _is_weighted_sum(layer: nn.Module) -> bool:
    return isinstance(layer, WEIGHTED_SUM_LAYERS) or getattr(layer, "sums_weighted_inputs", False)


def diagonal_gauss_newton(
    chain: nn.Module, inputs: Tensor, targets: Tensor
) -> dict[nn.Parameter, Tensor]:
    """Σ over the batch of each pattern's ∂²E/∂w_k², for every trainable parameter of ``chain``.

    ``chain`` is an ``nn.Sequential`` of two kinds of layers: pointwise activations, which declare
    ``derivative(a)``, and layers whose outputs are sums of weight × input (see
    ``WEIGHTED_SUM_LAYERS``). Its last layer has no trainable parameters and gives the boundary
    condition, ``input_curvature(x, targets)`` = ∂²E/∂x² of the criterion at its input.
    """
    if not isinstance(chain, nn.Sequential):
        raise TypeError(
            "SDLM backpropagates second derivatives through a chain of layers; "
            f"{type(chain).__name__} is not an nn.Sequential (LeNet-5's 1998 network is one)"
        )
    layers = list(chain)
    head = layers[-1]
    if not hasattr(head, "input_curvature"):
        raise TypeError(
            f"{type(head).__name__} (the last layer) has no input_curvature(x, targets): the "
            "second-derivative pass needs the criterion's curvature at the output"
        )
    if any(p.requires_grad for p in head.parameters()):
        raise TypeError("the output layer of an SDLM network must have no trainable parameters")
    for layer in layers[:-1]:
        if not (hasattr(layer, "derivative") or _is_weighted_sum(layer)):
            raise TypeError(
                f"SDLM cannot backpropagate second derivatives through {type(layer).__name__}: a "
                "layer must be a weighted sum (Conv, Linear, or sums_weighted_inputs = True) or a "
                "pointwise activation with derivative(a)"
            )

    stage_inputs: list[Tensor] = []
    x = inputs
    with torch.no_grad():
        for layer in layers[:-1]:
            stage_inputs.append(x)
            x = layer(x)
        curvature = head.input_curvature(x, targets)

    result: dict[nn.Parameter, Tensor] = {}
    with torch.enable_grad():
        for index in reversed(range(len(layers) - 1)):
            layer, x = layers[index], stage_inputs[index]
            derivative: Callable[[Tensor], Tensor] | None = getattr(layer, "derivative", None)
            if derivative is not None:
                curvature = curvature * derivative(x).square()
                continue
            # Every weight enters squared; only the trainable ones are asked for a curvature.
            params = dict(layer.named_parameters())
            squared = {
                n: p.detach().square().requires_grad_(p.requires_grad) for n, p in params.items()
            }
            x_squared = x.square().requires_grad_(index > 0)
            outputs = functional_call(layer, squared, (x_squared,))
            trainable = [n for n, p in params.items() if p.requires_grad]
            wrt = [squared[n] for n in trainable] + ([x_squared] if index > 0 else [])
            if not wrt:
                continue
            grads = torch.autograd.grad(outputs, wrt, curvature, allow_unused=True)
            for name, grad in zip(trainable, grads, strict=False):
                param = params[name]
                value = grad if grad is not None else torch.zeros_like(param)
                result[param] = result[param] + value if param in result else value  # shared
            if index > 0:
                curvature = grads[-1]
    return result


class SDLM(Optimizer):
    """w_k ← w_k − η / (μ + h_kk) · ∂E/∂w_k, with h_kk set by ``set_curvature`` (Appendix C).

    The paper re-estimates h_kk on 500 patterns before each pass and keeps it fixed during the
    pass (section III.A); ``classicnets.training.callbacks.SDLMCurvature`` does that in a
    training run.
    With a batch of B patterns and a mean loss, the step is η·B/(μ + h) on the mean gradient (the
    sum of B per-pattern steps): the module's linear scaling rule with reference batch 1.

    Args:
        params: the parameters (or parameter groups) to train.
        lr: the global learning rate η (the paper: 5e-4 for the first two passes, per pattern).
        mu: μ, which bounds the step where the curvature is small (the paper: 0.02).
    """

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict], lr: float = 5e-4, mu: float = 0.02
    ) -> None:
        if lr <= 0 or mu <= 0:
            raise ValueError(f"SDLM needs lr > 0 and mu > 0, got lr={lr}, mu={mu}")
        super().__init__(params, {"lr": lr, "mu": mu})

    @torch.no_grad()
    def set_curvature(self, curvature: dict[nn.Parameter, Tensor]) -> None:
        """Store the h_kk estimates (one tensor per trainable parameter, shaped like it)."""
        for group in self.param_groups:
            for param in group["params"]:
                if not param.requires_grad:
                    continue  # frozen: never stepped
                if param not in curvature:
                    raise KeyError(
                        f"no curvature estimate for a parameter of shape {tuple(param.shape)}: "
                        "SDLM trains only the parameters of the network's chain of layers"
                    )
                h = curvature[param].detach()
                if (h < 0).any():
                    raise ValueError("a Gauss-Newton curvature estimate cannot be negative")
                self.state[param]["curvature"] = h.to(param).clone()
                # μ + h_kk is fixed for the pass: added once here, not at every step.
                self.state[param]["denominator"] = self.state[param]["curvature"] + group["mu"]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any("denominator" not in self.state[p] for p in params):
                raise RuntimeError(
                    "SDLM has no curvature estimate yet: call set_curvature() before the first "
                    "step (in training, the SDLMCurvature callback does it)"
                )
            grads = [p.grad for p in params]
            denominators = [self.state[p]["denominator"] for p in params]
            # One fused update per group: per pattern, ten per-tensor ops cost more than the math.
            compat.foreach_addcdiv_(params, grads, denominators, value=-group["lr"])
        return loss
