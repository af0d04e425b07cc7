"""Details the recipes take from their reference code (Caffe's bvlc_googlenet, TF-slim's MobileNets,
the official ShuffleNet code), checked on the networks and optimizers the recipes build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from classicnets.models import get_model
from classicnets.models.googlenet import caffe_lrn
from classicnets.run.setup import compose_config
from classicnets.training.module import parameter_groups


def test_googlenet_lrn_is_caffes_across_channel_layer_with_k_1() -> None:
    """Caffe (lrn_layer.cpp): b = a / (k + α/n Σ_window a²)^β, k = 1, n = 5, α = 1e-4, β = 0.75,
    the window zero-padded at the first and last channels."""
    torch.manual_seed(0)
    a = torch.randn(2, 7, 3, 3) * 40  # raw-pixel scale, where the sum matters
    squares = nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # channels padded by n // 2
    window = sum(squares[:, i : i + 7] for i in range(5))
    expected = a / (1.0 + 1e-4 / 5 * window) ** 0.75
    torch.testing.assert_close(caffe_lrn()(a), expected)
    net = get_model("googlenet")
    assert isinstance(net.lrn1, nn.LocalResponseNorm) and net.lrn1.k == 1.0


@pytest.mark.parametrize("recipe", ["mobilenet_v1", "mobilenet_v2"])
def test_mobilenets_decay_only_conv_and_fc_weights_as_tf_slim(recipe: str, tmp_path: Path) -> None:
    """TF-slim regularises the weights of conv2d and fully_connected layers only: not the
    depthwise filters (separable_conv2d), BN γ/β or biases."""
    cfg = compose_config("train", [f"model={recipe}"], tmp_path)
    net = get_model(recipe, width_mult=1.0)
    optimizer = instantiate(cfg.model.optimizer)(parameter_groups(net, cfg.model.no_weight_decay))
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == 4e-5 and spared["weight_decay"] == 0.0
    expected = {
        id(m.weight)
        for m in net.modules()
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)
    }
    assert {id(p) for p in decayed["params"]} == expected
    assert len(decayed["params"]) + len(spared["params"]) == len(list(net.parameters()))


def test_shufflenet_v2_recipes_build_the_classifier_without_a_bias(tmp_path: Path) -> None:
    """The official code's ``nn.Linear(..., bias=False)``: 1,000 parameters fewer than
    torchvision's twin, which the builder's default still is."""
    cfg = compose_config("train", ["model=shufflenet_v2_x1_0"], tmp_path)
    net = get_model("shufflenet_v2_x1_0", fc_bias=cfg.model.net.fc_bias)
    assert net.fc.bias is None
    assert sum(p.numel() for p in net.parameters()) == 2_278_604 - 1000
    assert get_model("shufflenet_v2_x1_0").fc.bias is not None


def test_resnext_follows_the_authors_code(tmp_path: Path) -> None:
    """facebookresearch/ResNeXt: Nesterov momentum (train.lua), ×0.1 every 30 epochs, 100 epochs
    (opts.lua)."""
    cfg = compose_config("train", ["model=resnext50_32x4d"], tmp_path)
    assert cfg.model.optimizer.nesterov is True and cfg.trainer.max_epochs == 100
    assert list(cfg.model.scheduler.milestones) == [30, 60, 90]
