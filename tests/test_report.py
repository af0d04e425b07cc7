"""scripts/report.py: our error over seeds beside the paper's, stopped runs marked."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from omegaconf import OmegaConf

from classicnets.run.setup import compose_config
from run_helpers import load_script


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return load_script("report")


def fake_run(directory: Path, overrides: list[str], accuracy: tuple[float, float] | None) -> None:
    """A run folder as train.py leaves it: the composed config, and metrics.json if it ended."""
    cfg = compose_config("train", overrides, directory)
    (directory / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, directory / ".hydra" / "config.yaml")
    if accuracy is not None:
        top1, top5 = accuracy
        prefix = f"test/{cfg.data.test_protocol}"
        metrics = {f"{prefix}/acc_top1": top1, f"{prefix}/acc_top5": top5, "seed": cfg.seed}
        (directory / "metrics.json").write_text(json.dumps(metrics))


def test_two_seeds_are_averaged_and_a_stopped_run_is_marked_not_averaged(
    tmp_path: Path, report: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "multiruns" / "2026-12-01"
    alexnet = ["model=alexnet", "data.root=/nowhere"]
    fake_run(sweep / "0", [*alexnet, "seed=1"], (0.60, 0.80))  # 40 / 20 % error
    fake_run(sweep / "1", [*alexnet, "seed=2"], (0.56, 0.84))  # 44 / 16 % error
    fake_run(sweep / "2", [*alexnet, "seed=3"], None)  # killed before its test
    csv_file = tmp_path / "report.csv"
    assert report.main([str(tmp_path), "--csv", str(csv_file)]) == 0
    (row,) = report.report_rows(report.find_runs([tmp_path]))
    assert row["model"] == "alexnet" and row["protocol"] == "ten_crop"
    assert row["seeds"] == "1, 2"
    assert row["top-1 err %"] == "42.00 ± 2.83"  # mean 42, sample std of (40, 44) = 2√2
    assert row["top-5 err %"] == "18.00 ± 2.83"
    assert row["paper top-1"] == "40.70" and row["Δ top-1"] == "+1.30"  # Krizhevsky Table 2
    assert row["paper top-5"] == "18.20" and row["Δ top-5"] == "-0.20"
    assert "Krizhevsky" in row["paper source"] and row["stopped early"] == "1"
    out = capsys.readouterr().out
    assert "| alexnet | ten_crop | imagenet | S=[256, 256] | 1, 2 | 42.00 ± 2.83 |" in out
    assert f"stopped early (not averaged): {sweep / '2'}" in out
    assert "42.00 ± 2.83" in csv_file.read_text()


def test_no_runs_is_one_error_line(
    tmp_path: Path, report: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no training runs")


def test_an_eval_of_a_checkpoint_under_another_protocol_is_a_row_of_its_own(
    tmp_path: Path, report: ModuleType
) -> None:
    train_dir = tmp_path / "train" / "runs" / "a"
    trained = ["model=resnet50", "data.root=/nowhere", "data.test_protocol=center_crop", "seed=7"]
    fake_run(train_dir, trained, (0.75, 0.92))
    ckpt = train_dir / "checkpoints" / "best.ckpt"
    eval_dir = tmp_path / "eval" / "runs" / "b"
    cfg = compose_config("eval", [f"ckpt_path={ckpt}"], eval_dir)
    (eval_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, eval_dir / ".hydra" / "config.yaml")
    metrics = {
        "test/ten_crop/acc_top1": 0.77,
        "test/ten_crop/acc_top5": 0.93,
        "checkpoint": str(ckpt),
    }
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    rows = {r["protocol"]: r for r in report.report_rows(report.find_runs([tmp_path]))}
    assert rows["ten_crop"]["model"] == "resnet50" and rows["ten_crop"]["seeds"] == "7"
    assert rows["ten_crop"]["top-1 err %"] == "23.00" and rows["ten_crop"]["paper top-1"] == "22.85"
    assert rows["ten_crop"]["Δ top-1"] == "+0.15"
    assert rows["center_crop"]["top-1 err %"] == "25.00"  # the training run's own test


def test_a_run_in_a_setting_the_paper_did_not_report_gets_no_paper_figure(
    tmp_path: Path, report: ModuleType
) -> None:
    """ResNet-50 v1.5 (the stride on the 3×3) is not the paper's network: its row says so
    instead of borrowing v1's 22.85; the recipe's v1 run beside it gets Table 3's figure."""
    v1 = ["model=resnet50", "data.root=/nowhere", "seed=1"]
    fake_run(tmp_path / "v1", v1, (0.77, 0.93))
    fake_run(tmp_path / "v15", [*v1, "model.net.stride_in_1x1=false"], (0.78, 0.94))
    rows = {r["setting"]: r for r in report.report_rows(report.find_runs([tmp_path]))}
    assert rows["S=[256, 480]"]["paper top-1"] == "22.85"
    other = rows["stride_in_1x1=False S=[256, 480]"]
    assert other["paper top-1"] == "—" and other["Δ top-1"] == "—"
    assert other["paper source"] == "no paper figure for this setting"
