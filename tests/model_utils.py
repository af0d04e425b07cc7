"""Helpers the model tests share: parameter and MAC counts, and weight copying between twins."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (only those with ``requires_grad`` unless ``trainable_only=False``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: int, in_channels: int = 3) -> float:
    """Multiply-adds of one forward pass on a 1×C×H×W input, in GMACs (FLOPs / 2).

    FlopCounterMode counts convolutions and matrix products, the same operations torchvision's
    ``_ops`` metadata count; pooling, normalisation and activations are left out. A model built on
    the meta device (``with torch.device("meta"):``) is counted without computing anything."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, input_size, input_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def copy_weights_by_order(src: nn.Module, dst: nn.Module, assign: bool = False) -> None:
    """Load ``src``'s state_dict into ``dst``, pairing entries in order (names may differ).

    Parameters and buffers (BN running statistics, ``num_batches_tracked``) are both copied; every
    pair must have the same shape, so a layer order that differs between the twins fails loudly.
    ``assign=True`` replaces ``dst``'s tensors instead of copying into them, so ``dst`` may be built
    on the meta device (skipping its own, slow, random init)."""
    src_items = list(src.state_dict().items())
    dst_items = list(dst.state_dict().items())
    assert len(src_items) == len(dst_items), (
        f"state_dicts differ in length: {len(src_items)} vs {len(dst_items)}"
    )
    new_state = {}
    for (src_name, src_t), (dst_name, dst_t) in zip(src_items, dst_items, strict=True):
        assert src_t.shape == dst_t.shape, (
            f"{src_name} {tuple(src_t.shape)} does not fit {dst_name} {tuple(dst_t.shape)}"
        )
        new_state[dst_name] = src_t.detach().clone()
    dst.load_state_dict(new_state, assign=assign)


@torch.no_grad()
def randomize_batchnorm_(model: nn.Module) -> nn.Module:
    """Perturb every BN's affine parameters and running statistics, so that an equivalence test
    would notice a BN in the wrong place (fresh BNs are the identity in eval mode)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def small_vgg(name: str, init: str = "paper") -> nn.Module:
    """A VGG's real convolutions behind a toy 8-8-10 classifier: the 102M-weight fc6 would cost
    seconds to initialise and tells nothing more."""
    from classicnets.models import get_model

    with torch.device("meta"):
        model = get_model(name, num_classes=10)
    model.classifier = nn.Sequential(
        nn.Linear(8, 8),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(8, 8),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(8, 10),
    )
    model.to_empty(device="cpu").reset_parameters(init)
    return model


def project_models() -> list[str]:
    """The registered networks of classicnets itself (tests register stand-ins of their own)."""
    from classicnets.models import list_models, model_info

    return [n for n in list_models() if model_info(n).builder.__module__.startswith("classicnets.")]
