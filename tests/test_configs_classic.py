"""The recipes of conf/model/ for AlexNet, ZFNet, VGG and GoogLeNet, composed the way
``python src/train.py model=<name>`` composes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from classicnets.callbacks import FilterRenorm, PolyakAveraging
from classicnets.data.presets import TRAIN_PRESETS
from classicnets.data.protocols import EVAL_PROTOCOLS
from classicnets.models import get_model

CONF = Path(__file__).resolve().parents[1] / "conf"
VGGS = [f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")] + ["vgg11_lrn"]
CONFIGS = ["alexnet", "zfnet", "googlenet", "googlenet_bn", *VGGS]

# model: (batch, input size, train preset, test protocol, epochs, reference batch) - RECIPES.md
EXPECTED = {
    "alexnet": (128, 227, "alexnet", "ten_crop", 90, 128),
    "zfnet": (128, 224, "alexnet", "ten_crop", 70, 128),
    "googlenet": (32, 224, "googlenet", "googlenet_144", 250, 32),
    "googlenet_bn": (32, 224, "googlenet", "googlenet_144", 250, 32),
} | {name: (256, 224, "vgg", "multi_scale", 74, 256) for name in VGGS}


@pytest.fixture(scope="module")
def configs() -> dict[str, DictConfig]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return {name: compose("train", overrides=[f"model={name}"]) for name in CONFIGS}


@pytest.mark.parametrize("name", CONFIGS)
def test_recipe_data_and_network(name: str, configs: dict[str, DictConfig]) -> None:
    cfg = configs[name]
    batch, size, preset, protocol, _, reference = EXPECTED[name]
    assert cfg.data._target_.endswith("ImageNetDataModule")
    assert (cfg.data.batch_size, cfg.data.input_size) == (batch, size)
    assert cfg.data.train_preset == preset and preset in TRAIN_PRESETS
    assert cfg.data.test_protocol == protocol and protocol in EVAL_PROTOCOLS
    assert cfg.model.reference_batch_size == reference
    net = OmegaConf.to_container(cfg.model.net)
    assert isinstance(net, dict) and net.pop("name") == name
    with torch.device("meta"):
        model = get_model(name, num_classes=1000, in_channels=3, **net)
    out = model.eval()(torch.empty(1, 3, size, size, device="meta"))
    assert out.shape == (1, 1000)


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg16"])
def test_sgd_divided_by_ten_on_plateau(name: str, configs: dict[str, DictConfig]) -> None:
    cfg = configs[name].model
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)
    scheduler = instantiate(cfg.scheduler)(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert cfg.scheduler_config.monitor == "val/acc_top1" and scheduler.mode == "max"
    for _ in range(cfg.scheduler.patience + 2):  # accuracy stuck: the rate drops ÷10
        scheduler.step(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert cfg.aux_loss_weights == []


def test_googlenet_recipe(configs: dict[str, DictConfig]) -> None:
    cfg = configs["googlenet"]
    assert list(cfg.model.aux_loss_weights) == [0.3, 0.3]
    assert cfg.model.net.aux_logits is True
    optimizer = instantiate(cfg.model.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.param_groups[0]["weight_decay"] == 2e-4
    scheduler = instantiate(cfg.model.scheduler)(optimizer)
    for _ in range(16):  # 4% less every 8 epochs
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.96**2)
    polyak = instantiate(cfg.callbacks.polyak_averaging)
    assert isinstance(polyak, PolyakAveraging) and polyak.decay == 0.9999


def test_zfnet_renormalises_filters(configs: dict[str, DictConfig]) -> None:
    callback = instantiate(configs["zfnet"].callbacks.filter_renorm)
    assert isinstance(callback, FilterRenorm) and callback.max_rms == 0.1
    assert "filter_renorm" not in configs["alexnet"].callbacks


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg11", "googlenet"])
def test_epochs_in_the_recipe_files(name: str) -> None:
    """The paper's length, as written in the model file (vgg13..19 and the _bn variants include
    vgg11.yaml, googlenet_bn includes googlenet.yaml)."""
    assert OmegaConf.load(CONF / "model" / f"{name}.yaml").trainer.max_epochs == EXPECTED[name][4]


def test_epochs_survive_composition(configs: dict[str, DictConfig]) -> None:
    """The model's recipe wins over trainer/default.yaml's placeholder."""
    assert {n: c.trainer.max_epochs for n, c in configs.items()} == {
        n: e[4] for n, e in EXPECTED.items()
    }
