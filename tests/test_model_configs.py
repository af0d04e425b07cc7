"""Every recipe in conf/model/ runs: a fast_dev_run of its full config (network, optimizer,
schedule, callbacks, augmentation preset) on a small ImageNet-layout tree of real JPEGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CONF_DIR, compose_config

MNIST_MODELS = {"lenet5", "lenet5_modern"}
IMAGENET_MODELS = sorted(
    p.stem for p in CONF_DIR.glob("model/*.yaml") if p.stem not in MNIST_MODELS
)
# These keep their paper's test protocol; the others test on the centre crop to keep the suite fast
# (the protocols themselves are covered crop by crop in test_data_pipeline.py).
PAPER_PROTOCOL = {"alexnet": "ten_crop", "googlenet": "googlenet_144"}


@pytest.mark.parametrize("name", IMAGENET_MODELS)
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
