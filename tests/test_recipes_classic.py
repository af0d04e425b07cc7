"""The recipes of conf/model/ for AlexNet, ZFNet, VGG and GoogLeNet, composed the way
``python src/train.py model=<name>`` composes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from classicnets.data.presets import TRAIN_PRESETS
from classicnets.models import get_model
from classicnets.run.setup import compose_config
from classicnets.training.callbacks import FilterRenorm, PolyakAveraging
from classicnets.training.module import parameter_groups

CONF = Path(__file__).resolve().parents[1] / "conf"
VGGS = [f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")] + ["vgg11_lrn"]
CONFIGS = ["alexnet", "zfnet", "googlenet", "googlenet_bn", *VGGS]

# model: (batch, input size, train preset, test protocol, epochs) - docs/recipes.md
EXPECTED = {
    "alexnet": (128, 227, "alexnet", "ten_crop", 90),
    "zfnet": (128, 224, "zfnet", "ten_crop", 70),
    "googlenet": (32, 224, "googlenet", "googlenet_144", 250),
    "googlenet_bn": (32, 224, "googlenet", "googlenet_144", 250),
} | {name: (256, 224, "vgg", "vgg_dense", 74) for name in VGGS}


@pytest.fixture(scope="module")
def configs() -> dict[str, DictConfig]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return {name: compose("train", overrides=[f"model={name}"]) for name in CONFIGS}


@pytest.mark.parametrize("name", CONFIGS)
def test_recipe_data_and_network(name: str, configs: dict[str, DictConfig]) -> None:
    cfg = configs[name]
    batch, size, preset, protocol, _ = EXPECTED[name]
    assert cfg.data._target_.endswith("ImageNetDataModule")
    # The batch is stated once, as the paper's; the data follows it.
    assert cfg.data.batch_size == cfg.model.reference_batch_size == batch
    assert cfg.data.input_size == size
    assert cfg.data.train_preset == preset and preset in TRAIN_PRESETS
    assert cfg.data.test_protocol == protocol
    net = OmegaConf.to_container(cfg.model.net)
    assert isinstance(net, dict) and net.pop("name") == name
    with torch.device("meta"):
        model = get_model(name, num_classes=1000, in_channels=3, **net)
    out = model.eval()(torch.empty(1, 3, size, size, device="meta"))
    assert out.shape == (1, 1000)


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg16"])
def test_sgd_divided_by_ten_on_plateau_three_times(
    name: str, configs: dict[str, DictConfig]
) -> None:
    cfg = configs[name].model
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)
    scheduler = instantiate(cfg.scheduler)(optimizer)
    assert cfg.scheduler_config.monitor == "val/acc_top1" and scheduler.mode == "max"
    rates = []
    for _ in range(10 * (cfg.scheduler.patience + 1)):  # accuracy stuck for 60 epochs
        scheduler.step(0.5)
        rates.append(optimizer.param_groups[0]["lr"])
    # AlexNet section 5, VGG section 3.1: reduced three times, then the rate stays.
    assert sorted(set(rates), reverse=True) == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5])
    assert rates[-1] == pytest.approx(1e-5) and scheduler.reductions == 3
    assert rates.index(rates[-1]) == 3 * (cfg.scheduler.patience + 1)  # patience + 1 bad each
    assert cfg.aux_loss_weights == []


def test_googlenet_recipe(configs: dict[str, DictConfig]) -> None:
    cfg = configs["googlenet"]
    assert list(cfg.model.aux_loss_weights) == [0.3, 0.3]
    assert cfg.model.net.aux_logits is True
    net = get_model("googlenet", aux_logits=True)
    groups = parameter_groups(net, cfg.model.no_weight_decay)
    optimizer = instantiate(cfg.model.optimizer)(groups)
    weights, biases = optimizer.param_groups
    # Caffe's bvlc_googlenet: every bias at lr_mult 2, decay_mult 0; the weights at 1 and 1.
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(names[id(p)].endswith("bias") for p in biases["params"])
    assert len(weights["params"]) + len(biases["params"]) == len(names)
    assert (weights["lr"], weights["weight_decay"]) == (0.01, 2e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.02, 0.0)
    scheduler = instantiate(cfg.model.scheduler)(optimizer)
    for _ in range(16):  # 4% less every 8 epochs, the biases' rate still twice the weights'
        optimizer.step()
        scheduler.step()
    assert weights["lr"] == pytest.approx(0.01 * 0.96**2)
    assert biases["lr"] == pytest.approx(0.02 * 0.96**2)
    polyak = instantiate(cfg.callbacks.polyak_averaging)
    assert isinstance(polyak, PolyakAveraging) and polyak.decay == 0.9999


def test_zfnet_renormalises_filters(configs: dict[str, DictConfig]) -> None:
    callback = instantiate(configs["zfnet"].callbacks.filter_renorm)
    assert isinstance(callback, FilterRenorm) and callback.max_rms == 0.1
    assert "filter_renorm" not in configs["alexnet"].callbacks


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg11", "googlenet"])
def test_epochs_in_the_recipe_files(name: str) -> None:
    """The paper's length, written once in the recipe or its family base (every VGG includes
    _base/vgg.yaml, googlenet and googlenet_bn _base/googlenet.yaml)."""
    base = {"vgg11": "_base/vgg", "googlenet": "_base/googlenet"}.get(name, name)
    assert OmegaConf.load(CONF / "model" / f"{base}.yaml").trainer.max_epochs == EXPECTED[name][4]


def test_epochs_survive_composition(configs: dict[str, DictConfig]) -> None:
    """The model's recipe wins over trainer/default.yaml's placeholder."""
    assert {n: c.trainer.max_epochs for n, c in configs.items()} == {
        n: e[4] for n, e in EXPECTED.items()
    }


@pytest.mark.parametrize("name", VGGS)
def test_vgg_initialisation(name: str, configs: dict[str, DictConfig]) -> None:
    """Net A (and the BN variants) from N(0, 0.01); B, D, E from Glorot unless init_from is
    given (the authors' note, section 3.1), since N(0, 0.01) stalls them."""
    net = configs[name].model.net
    assert net.init == ("glorot" if name in ("vgg13", "vgg16", "vgg19") else "paper")
    assert configs[name].model.init_from is None


def test_vgg_fixed_scale_and_the_scale_jitter_experiment(tmp_path: Path) -> None:
    """S = 384 for the single-scale net (a plain override), then the jittered net fine-tuned from
    it at lr 1e-3 with S ~ U[256, 512] (section 3.1); the experiment needs init_from."""
    fixed = compose_config("train", ["model=vgg16", "imagenet.train_scale=[384,384]"], tmp_path)
    assert list(fixed.data.train_scale) == [384, 384]
    jitter = compose_config("train", ["experiment=vgg16_scale_jitter"], tmp_path)
    assert list(jitter.data.train_scale) == [256, 512] and jitter.model.optimizer.lr == 1e-3
    assert jitter.data.test_protocol == "vgg_dense"


def test_scale_jitter_experiment_needs_its_starting_checkpoint(tmp_path: Path, train_main) -> None:
    cfg = compose_config("train", ["experiment=vgg16_scale_jitter"], tmp_path)
    with pytest.raises(SystemExit) as stopped:
        train_main(cfg)
    assert stopped.value.code == 2
