"""src/eval.py with several checkpoints: the softmax averaged over members, as AlexNet's and
GoogLeNet's ensembles; every member and the ensemble reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from classicnets.run.setup import compose_config
from classicnets.study.ensemble import SoftmaxAverage
from run_helpers import run_cli
from study_helpers import imagenet_checkpoint, lenet_checkpoint
from test_safe_load import assert_one_error_line, evil_checkpoint

FEW_BATCHES = ("+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1")


def test_an_ensemble_of_one_equals_its_member_and_plain_eval(tmp_path: Path, eval_main) -> None:
    ckpt = lenet_checkpoint(tmp_path / "a.ckpt")
    single = eval_main(compose_config("eval", [f"ckpt_path={ckpt}", *FEW_BATCHES], tmp_path / "1"))
    cfg = compose_config("eval", [f"ckpt_path=[{ckpt}]", *FEW_BATCHES], tmp_path / "e")
    metrics = eval_main(cfg)
    for key in ("test/acc_top1", "test/acc_top5", "test/loss", "val/acc_top1"):
        assert metrics[f"member0/{key}"] == single[key]
        assert metrics[f"ensemble/{key}"] == pytest.approx(single[key], abs=1e-5)
    assert single["test/loss"] > 0


def test_two_members_are_reported_apart_and_averaged(tmp_path: Path, eval_main) -> None:
    a, b = (lenet_checkpoint(tmp_path / f"{n}.ckpt", seed=s) for n, s in (("a", 0), ("b", 1)))
    cfg = compose_config("eval", [f"ckpt_path=[{a},{b}]", *FEW_BATCHES], tmp_path / "e")
    metrics = eval_main(cfg)
    assert metrics["member0/test/loss"] != metrics["member1/test/loss"]
    # The ensemble's loss is the cross-entropy of the averaged probabilities: by convexity of
    # -log, at most the members' mean loss.
    mean_loss = (metrics["member0/test/loss"] + metrics["member1/test/loss"]) / 2
    assert metrics["ensemble/test/loss"] <= mean_loss + 1e-6


def test_softmax_average_is_the_mean_of_the_members_probabilities() -> None:
    torch.manual_seed(0)
    nets = [nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    expected = torch.stack([net(x).softmax(-1) for net in nets]).mean(0)
    torch.testing.assert_close(SoftmaxAverage(nets)(x).exp(), expected)


def test_members_of_other_classes_are_one_error_line(
    fake_imagenet: Path, tmp_path: Path, eval_main, capsys: pytest.CaptureFixture[str]
) -> None:
    digits = lenet_checkpoint(tmp_path / "digits.ckpt")
    photos = imagenet_checkpoint(tmp_path / "photos.ckpt", fake_imagenet)
    run_dir = tmp_path / "e"
    cfg = compose_config("eval", [f"ckpt_path=[{digits},{photos}]"], run_dir)
    with pytest.raises(SystemExit) as stop:
        eval_main(cfg)
    assert stop.value.code == 2 and not (run_dir / "metrics.json").exists()
    assert "error: ensemble members disagree on their classes" in capsys.readouterr().err


def test_an_ensemble_member_that_carries_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    good = lenet_checkpoint(tmp_path / "good.ckpt")
    evil = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    run_dir = tmp_path / "run"
    result = run_cli("eval", f"ckpt_path=[{good},{evil}]", f"hydra.run.dir={run_dir}", check=False)
    assert_one_error_line(result, "evil.ckpt", "not a plain checkpoint")
    assert not marker.exists() and not (run_dir / "metrics.json").exists()
