"""No silent results: an untrained network, a data key nobody reads, NaN weights or metrics, a
full disk and a killed writer each end in one line or are cleaned up, never in a result that
looks like one."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from classicnets.run import report, temporaries
from classicnets.run.resume import AtomicCheckpointIO
from classicnets.run.setup import compose_config
from run_helpers import TINY, load_entry_point
from study_helpers import lenet_checkpoint

QUIET = (*TINY, "logger=none")


def refused(capsys: pytest.CaptureFixture[str], main, cfg) -> str:
    """Run ``main(cfg)``; it must exit 2 with one ``error:`` line, which is returned."""
    with pytest.raises(SystemExit) as stop:
        main(cfg)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_epochs=0",
        "+trainer.max_steps=0",
        "trainer.limit_train_batches=0",
        "trainer.limit_train_batches=0.0",
    ],
)
def test_a_run_that_would_train_nothing_is_refused(
    override: str, tmp_path: Path, train_main, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config("train", [*QUIET, override], tmp_path)
    line = refused(capsys, train_main, cfg)
    assert override.split("=")[0].lstrip("+") in line and "untrained network" in line, line
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("ckpt_path", ["null", "auto"])
def test_testing_without_weights_is_refused(
    ckpt_path: str, tmp_path: Path, train_main, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config("train", [*QUIET, "train=false", f"ckpt_path={ckpt_path}"], tmp_path)
    line = refused(capsys, train_main, cfg)
    assert "no weights to test" in line and "ckpt_path=CKPT" in line, line
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["data.root={tmp}/mnist"], "data.root"),
        (["data.download=true"], "data.download"),
        (["data.source=torchvision", "data.test_size=100"], "data.test_size"),
    ],
)
def test_a_data_key_that_the_source_does_not_read_is_refused(
    overrides: list[str],
    key: str,
    tmp_path: Path,
    train_main,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overrides = [o.format(tmp=tmp_path) for o in overrides]
    cfg = compose_config("train", [*QUIET, *overrides], tmp_path / "run")
    line = refused(capsys, train_main, cfg)
    assert line.startswith(f"error: {key}=") and "data.source" in line, line


def test_eval_refuses_a_data_root_that_the_checkpoints_digits_do_not_read(
    tmp_path: Path, eval_main, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    overrides = [f"ckpt_path={ckpt}", f"data.root={tmp_path}", "logger=none"]
    line = refused(capsys, eval_main, compose_config("eval", overrides, tmp_path / "run"))
    assert "data.root=" in line and "data.source=torchvision" in line, line


def poisoned(tmp_path: Path, value: float, name: str = "net.c1.weight") -> Path:
    """A LeNet-5 checkpoint whose tensor ``name`` is ``value`` everywhere."""
    path = lenet_checkpoint(tmp_path / "lenet.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"][name].fill_(value)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("script", ["eval", "export", "predict"])
def test_nan_weights_are_refused_naming_the_tensor(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    ckpt = poisoned(tmp_path, float("nan"))
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    overrides = {
        "eval": ["logger=none"],
        "export": [],
        "predict": ["logger=none", f"inputs={image}"],
    }[script]
    cfg = compose_config(script, [f"ckpt_path={ckpt}", *overrides], tmp_path / "run")
    line = refused(capsys, load_entry_point(script).main, cfg)
    assert str(ckpt) in line and "NaN or infinite" in line and "net." in line, line
    assert not any((tmp_path / "run").glob("[!.]*.*"))  # no metrics.json, model.onnx, CSV


def test_a_nan_metric_is_written_as_null_and_ends_in_one_line(
    tmp_path: Path, eval_main, capsys: pytest.CaptureFixture[str]
) -> None:
    # Finite weights whose outputs are not: the RBF distances to these centres overflow.
    ckpt = poisoned(tmp_path, 3e38, "net.output.centers")
    overrides = [f"ckpt_path={ckpt}", "logger=none", "trainer.limit_test_batches=1"]
    overrides += ["trainer.limit_val_batches=1", "+trainer.enable_progress_bar=false"]
    line = refused(capsys, eval_main, compose_config("eval", overrides, tmp_path / "run"))
    assert "came out NaN or infinite" in line and "metrics.json" in line, line
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())  # valid JSON
    nulls = [key for key, value in written.items() if value is None]
    assert nulls and all(key in line for key in nulls), (nulls, line)


def test_metrics_json_holds_null_for_nan_and_is_strict_json(tmp_path: Path) -> None:
    report.report_metrics({"val/loss": math.nan, "val/acc_top1": 0.25}, tmp_path, {"seed": 1})
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == {
        "val/loss": None,
        "val/acc_top1": 0.25,
        "seed": 1,
    }


def test_a_sweep_job_whose_loss_goes_nan_writes_its_error_and_the_worst_value(
    tmp_path: Path, train_main
) -> None:
    overrides = [*QUIET, "hparams_search=lenet5_optuna", "model=lenet5_modern"]
    overrides += ["model.optimizer.lr=1e30", "trainer.max_epochs=1"]
    cfg = compose_config("train", overrides, tmp_path)
    assert train_main(cfg) == float("-inf")  # the Optuna search maximises
    assert "the loss is NaN or infinite" in (tmp_path / "error.txt").read_text()
    assert not (tmp_path / "metrics.json").exists()


def killed_writer(path: Path) -> Path:
    """The temporary file that a process leaves when it is killed while writing ``path``."""
    code = (
        "import os, signal, sys; from pathlib import Path; "
        "from classicnets.run.temporaries import temporary_path; "
        "f = open(temporary_path(Path(sys.argv[1])), 'wb'); f.write(b'half a file'); f.flush(); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert child.returncode == -signal.SIGKILL
    (left,) = path.parent.glob(f".{path.name}.tmp-*")
    return left


def test_a_killed_writers_checkpoint_temporary_is_removed_at_the_next_save(
    tmp_path: Path,
) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    left = killed_writer(last)
    older = last.parent / f".best.ckpt.tmp-{left.name.rsplit('-', 1)[1]}"  # id-less old name
    older.write_bytes(b"x")
    live = temporaries.temporary_path(last.parent / "best.ckpt")  # this process: still writing
    live.write_bytes(b"x")
    elsewhere = last.parent / ".last.ckpt.tmp-another-node-1"  # another host's: left alone
    elsewhere.write_bytes(b"x")

    AtomicCheckpointIO().save_checkpoint({"epoch": 3}, last)
    assert not left.exists() and not older.exists()
    assert live.exists() and elsewhere.exists()
    assert torch.load(last, weights_only=True) == {"epoch": 3}


def test_a_killed_writers_metrics_temporary_is_removed_the_next_time(tmp_path: Path) -> None:
    left = killed_writer(tmp_path / "metrics.json")
    legacy = tmp_path / "metrics.json.tmp"  # older versions' name, without the writer
    legacy.write_text("")
    report.report_metrics({"val/acc_top1": 0.5}, tmp_path, {})
    assert not left.exists() and not legacy.exists()
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val/acc_top1": 0.5}


def test_train_removes_a_killed_writers_checkpoint_temporary_at_start(
    tmp_path: Path, train_main, capsys: pytest.CaptureFixture[str]
) -> None:
    left = killed_writer(tmp_path / "checkpoints" / "last.ckpt")
    cfg = compose_config("train", [*QUIET, "trainer.max_epochs=0"], tmp_path)
    refused(capsys, train_main, cfg)  # refused, but the dead process's file is gone
    assert not left.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_writing_metrics_is_one_line_and_leaves_no_temporary(
    tmp_path: Path, eval_main, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "eval"
    run_dir.mkdir()
    # Every write to /dev/full fails as a full disk does (ENOSPC).
    tmp = temporaries.temporary_path(run_dir / "metrics.json")
    tmp.symlink_to("/dev/full")
    overrides = [f"ckpt_path={ckpt}", "logger=none", "validate=false"]
    overrides += ["trainer.limit_test_batches=1", "+trainer.enable_progress_bar=false"]
    line = refused(capsys, eval_main, compose_config("eval", overrides, run_dir))
    assert "no space left on the disk while writing" in line and "metrics.json" in line, line
    assert not tmp.exists() and not tmp.is_symlink()
    assert not (run_dir / "metrics.json").exists()
