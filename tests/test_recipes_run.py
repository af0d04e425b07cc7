"""Every recipe in conf/model/ runs: a fast_dev_run of its full config (network, optimizer,
schedule, callbacks, augmentation preset) on a small ImageNet-layout tree of real JPEGs, and on
the real MNIST digits, resized to the recipe's input size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from classicnets.data.mnist import MNISTDataModule
from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from run_helpers import CONF_DIR

MNIST_MODELS = {"lenet5", "lenet5_modern"}
IMAGENET_MODELS = sorted(
    p.stem for p in CONF_DIR.glob("model/*.yaml") if p.stem not in MNIST_MODELS
)  # conf/model/_base/ holds the shared parts, not recipes
# One recipe per family base and training preset runs on the JPEG tree (every recipe runs on the
# digits below, through the same network, optimizer and schedule; the suite runs on 2 CPU cores).
ON_JPEGS = [
    "alexnet",
    "zfnet",
    "vgg11_lrn",
    "googlenet",
    "googlenet_bn",
    "resnet18",
    "resnet50",
    "preact_resnet18",
    "resnext50_32x4d",
    "mobilenet_v1",
    "mobilenet_v2",
    "shufflenet_v1_g3",
    "shufflenet_v2_x0_5",
]
# These keep their paper's test protocol; the others test on the centre crop to keep the suite fast
# (the protocols themselves are covered crop by crop in test_data_pipeline.py).
PAPER_PROTOCOL = {"alexnet": "ten_crop", "googlenet": "googlenet_144"}


def test_every_recipe_but_lenet5_selects_imagenet_data(tmp_path: Path) -> None:
    for name in IMAGENET_MODELS:
        cfg = compose_config("train", [f"model={name}"], tmp_path)
        assert cfg.data._target_.endswith("ImageNetDataModule"), name
        assert cfg.data.input_size == cfg.imagenet.input_size, name


@pytest.mark.parametrize("name", ON_JPEGS)
def test_fast_dev_run_of_the_full_recipe(
    name: str, fake_imagenet: Path, tmp_path: Path, train_main
) -> None:
    overrides = [
        f"model={name}",
        "debug=fast_dev_run",
        f"data.root={fake_imagenet}",
        "data.batch_size=1",  # one image per step: the suite runs on 2 CPU cores
        "data.num_workers=0",
    ]
    if name not in PAPER_PROTOCOL:
        overrides.append("data.test_protocol=center_crop")
    cfg = compose_config("train", overrides, tmp_path)
    assert cfg.data._target_.endswith("ImageNetDataModule")  # chosen by the model config
    train_main(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    protocol = PAPER_PROTOCOL.get(name, "center_crop")
    assert 0.0 <= metrics[f"test/{protocol}/acc_top1"] <= 1.0
    assert metrics["val/loss"] == metrics["val/loss"]  # finite, not NaN


@pytest.mark.parametrize("name", sorted(MNIST_MODELS))
def test_mnist_models_keep_mnist(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"model={name}"], tmp_path)
    assert cfg.data._target_.endswith("MNISTDataModule") and cfg.model.net.name == name


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_every_imagenet_recipe_runs_on_mnist(name: str, tmp_path: Path, train_main) -> None:
    """`python src/train.py model=<recipe> data=mnist`: the recipe's ImageNet data side stays out
    of the MNIST module, whose digits reach the network at the recipe's crop size."""
    overrides = [
        f"model={name}",
        "data=mnist",
        "debug=fast_dev_run",
        "data.batch_size=2",
        "data.eval_batch_size=2",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    assert cfg.data._target_.endswith("MNISTDataModule")
    assert cfg.data.input_size == cfg.imagenet.input_size in (224, 227)
    train_main(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc_top1"] <= 1.0
    assert metrics["val/loss"] == metrics["val/loss"]  # finite, not NaN


def test_mnist_digits_resized_to_the_input_size() -> None:
    digits = MNISTDataModule(input_size=227)
    images = torch.rand(2, 1, 32, 32)
    resized, _ = digits.on_after_batch_transfer((images, torch.zeros(2)), 0)
    assert resized.shape == (2, 1, 227, 227)
    # Bilinear: the mean level survives the resize; LeNet-5's own size is left alone.
    assert resized.mean().item() == pytest.approx(images.mean().item(), abs=0.01)
    same, _ = MNISTDataModule().on_after_batch_transfer((images, torch.zeros(2)), 0)
    assert same is images


def test_googlenet_tests_its_polyak_average(tmp_path: Path, train_main, eval_main) -> None:
    """The final model GoogLeNet reports is the Polyak average (section 6): train.py tests it,
    and the file named in test_checkpoint holds it, apart from the last SGD iterate."""
    limits = [
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    ]
    overrides = [
        "model=googlenet",
        "data=mnist",
        "logger=none",
        "trainer.max_epochs=1",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        *limits,
    ]
    train_main(compose_config("train", overrides, tmp_path / "train"))
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    checkpoint = load_file(trained["test_checkpoint"])
    average, last = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(average[k], last[k]) for k in average)
    cfg = compose_config("eval", [f"ckpt_path={trained['test_checkpoint']}", *limits], tmp_path)
    evaluated = eval_main(cfg)
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], abs=1e-6)
