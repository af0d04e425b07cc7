"""A checkpoint or weights file from elsewhere is read as data, never run as code."""

from __future__ import annotations

import builtins
import hashlib
from pathlib import Path

import pytest
import torch

from classicnets.run.safe_load import (
    CorruptCheckpointError,
    HashMismatchError,
    UnsafeCheckpointError,
    load_file,
)
from run_helpers import TINY, run_cli


class WritesAFile:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like one of our checkpoints but carries code in its pickle."""
    torch.save({"state_dict": {}, "hyper_parameters": WritesAFile(marker)}, path)
    return path


def assert_one_error_line(result, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"not a plain checkpoint.*state_dict"):
        load_file(path)
    assert not marker.exists()


def test_eval_refuses_a_checkpoint_that_carries_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    result = run_cli("eval", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert_one_error_line(result, "evil.ckpt", "not a plain checkpoint")
    assert not marker.exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_resume_refuses_a_last_checkpoint_that_carries_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "checkpoints").mkdir()
    evil_checkpoint(tmp_path / "checkpoints" / "last.ckpt", marker)
    result = run_cli("train", *TINY, "logger=none", f"hydra.run.dir={tmp_path}", check=False)
    assert_one_error_line(result, "last.ckpt", "not a plain checkpoint")
    assert not marker.exists()


def test_a_truncated_checkpoint_is_called_corrupt_not_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CorruptCheckpointError, match="truncated or damaged"):
        load_file(path)
    result = run_cli("eval", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert_one_error_line(result, "cut.ckpt", "truncated or damaged")


def test_a_weights_file_that_is_not_a_run_checkpoint_is_one_line_for_eval(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    result = run_cli("eval", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert_one_error_line(result, "weights.pth", "not a checkpoint of a classicnets run")


def test_a_torchvision_name_is_checked_against_the_files_hash(tmp_path: Path) -> None:
    weights = {"fc.weight": torch.arange(6.0).view(2, 3)}
    staged = tmp_path / "staged.pth"
    torch.save(weights, staged)
    prefix = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    good = staged.rename(tmp_path / f"resnet50-{prefix}.pth")
    torch.testing.assert_close(load_file(good)["fc.weight"], weights["fc.weight"])

    bad = tmp_path / "resnet50-0676ba61.pth"
    bad.write_bytes(good.read_bytes())
    with pytest.raises(HashMismatchError, match="0676ba61"):
        load_file(bad)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.ckpt"):
        load_file(tmp_path / "nothing.ckpt")
