"""A file is data: a checkpoint whose stored config names code outside this project (here
``numpy.savetxt``, which writes any text to any path and which Hydra's blocklist lets through) is
refused by every command that rebuilds something from it, before anything is built."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytest
import torch
from PIL import Image

from classicnets.run.allowlist import ALLOWED_TARGETS, checked_targets
from classicnets.run.checkpoints import CONFIG_KEY
from classicnets.run.setup import compose_config
from run_helpers import REPO, load_entry_point, load_script
from study_helpers import lenet_checkpoint


def savetxt(marker: Path) -> dict[str, Any]:
    """A config node that writes ``marker`` when Hydra instantiates it."""
    return {"_target_": "numpy.savetxt", "fname": str(marker), "X": ["echo pwned"], "fmt": "%s"}


PAYLOADS: dict[str, Callable[[dict, Path], tuple[dict, str]]] = {
    # where the node goes in the stored data config → (new data config, the key refused)
    "top": lambda data, m: (savetxt(m), "data._target_"),
    "nested": lambda data, m: ({**data, "hook": savetxt(m)}, "data.hook._target_"),
    "list": lambda data, m: ({**data, "hooks": [1, savetxt(m)]}, "data.hooks[1]._target_"),
    "partial": lambda data, m: (
        {**data, "hook": {**savetxt(m), "_partial_": True}},
        "data.hook._target_",
    ),
}


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lenet_checkpoint(tmp_path_factory.mktemp("lenet") / "lenet.ckpt")


def hostile(lenet: Path, where: str, directory: Path) -> tuple[Path, Path, str]:
    """A copy of ``lenet`` whose stored data config carries the payload ``where``: (checkpoint,
    the file the payload would write, the key that must be named)."""
    checkpoint = torch.load(lenet, weights_only=True)
    marker = directory / "pwned.txt"
    config = checkpoint[CONFIG_KEY]
    config["data"], key = PAYLOADS[where](config["data"], marker)
    path = directory / f"hostile-{where}.ckpt"
    torch.save(checkpoint, path)
    return path, marker, key


def test_the_payload_runs_when_hydra_is_given_it(tmp_path: Path) -> None:
    """Why the allowlist exists: Hydra's blocklist does not stop numpy.savetxt."""
    marker = tmp_path / "pwned.txt"
    hydra.utils.instantiate(savetxt(marker))
    assert marker.read_text() == "echo pwned\n"


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def run_entry_point(script: str, overrides: list[str], run_dir: Path) -> int:
    quiet = ["logger=none"] if script != "export" else []
    cfg = compose_config(script, [*overrides, *quiet], run_dir)
    with pytest.raises(SystemExit) as stop:
        load_entry_point(script).main(cfg)
    return int(stop.value.code)


@pytest.mark.parametrize("where", sorted(PAYLOADS))
def test_eval_refuses_a_stored_config_that_names_code_and_nothing_runs(
    where: str, lenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker, key = hostile(lenet, where, tmp_path)
    assert run_entry_point("eval", [f"ckpt_path={path}"], tmp_path / "run") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and f"{CONFIG_KEY}.{key}='numpy.savetxt'" in line, line
    assert not marker.exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_an_ensemble_with_one_hostile_member_is_refused(
    lenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker, key = hostile(lenet, "nested", tmp_path)
    assert run_entry_point("eval", [f"ckpt_path=[{lenet},{path}]"], tmp_path / "run") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and key in line
    assert not marker.exists()


@pytest.mark.parametrize("script", ["predict", "export"])
def test_predict_and_export_refuse_a_stored_config_that_names_code(
    script: str, lenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker, key = hostile(lenet, "list", tmp_path)
    digit = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(digit)
    extra = [f"inputs={digit}"] if script == "predict" else []
    assert run_entry_point(script, [f"ckpt_path={path}", *extra], tmp_path / "run") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and key in line
    assert not marker.exists()
    assert not (tmp_path / "run" / "model.onnx").exists()


@pytest.mark.parametrize("script", ["filters", "neighbours"])
def test_the_study_scripts_refuse_a_stored_config_that_names_code(
    script: str, lenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker, key = hostile(lenet, "top", tmp_path)
    assert run_entry_point(script, [f"ckpt_path={path}"], tmp_path / "run") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and key in line
    assert not marker.exists()
    assert not list((tmp_path / "run").glob("*.png"))


@pytest.mark.parametrize("script", ["report", "model_table"])
def test_the_run_readers_refuse_a_run_directory_whose_config_names_code(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "0"
    (run / ".hydra").mkdir(parents=True)
    marker = tmp_path / "pwned.txt"
    (run / ".hydra" / "config.yaml").write_text(
        "model:\n  net:\n    name: lenet5\n"
        "data:\n  _target_: classicnets.data.mnist.MNISTDataModule\n"
        f"  hook:\n    _target_: numpy.savetxt\n    fname: {marker}\n    X: [pwned]\n"
    )
    runs = str(tmp_path / "runs")
    argv = [runs] if script == "report" else ["--plot", str(tmp_path / "c.png"), "--runs", runs]
    assert load_script(script).main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "config.yaml" in line and "data.hook._target_='numpy.savetxt'" in line
    assert not marker.exists()


def test_hyper_parameters_that_name_code_or_unknown_arguments_are_refused(
    lenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned.txt"
    for name, value in [("optimizer", savetxt(marker)), ("init_from", str(lenet))]:
        checkpoint = torch.load(lenet, weights_only=True)
        checkpoint["hyper_parameters"][name] = value
        path = tmp_path / f"{name}.ckpt"
        torch.save(checkpoint, path)
        assert run_entry_point("filters", [f"ckpt_path={path}"], tmp_path / name) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(path) in line and f"hyper_parameters.{name}" in line, line
    assert not marker.exists()


def test_an_old_dotted_name_can_be_kept_as_an_alias_of_a_moved_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    current = "classicnets.data.mnist.MNISTDataModule"
    aliases = {**ALLOWED_TARGETS, "classicnets.mnist.MNISTDataModule": current}
    monkeypatch.setattr("classicnets.run.allowlist.ALLOWED_TARGETS", aliases)
    node = {"_target_": "classicnets.mnist.MNISTDataModule", "batch_size": 8}
    assert checked_targets(node, "old.ckpt", "data") == {"_target_": current, "batch_size": 8}


def test_every_allowed_name_is_a_datamodule_and_every_data_config_is_allowed() -> None:
    from lightning import LightningDataModule

    for name, current in ALLOWED_TARGETS.items():
        assert issubclass(hydra.utils.get_class(current), LightningDataModule), name
    for yaml in sorted((REPO / "conf" / "data").glob("*.yaml")):
        targets = re.findall(r"^_target_: (\S+)", yaml.read_text(), flags=re.M)
        assert targets and all(t in ALLOWED_TARGETS for t in targets), yaml


@pytest.mark.parametrize("where", sorted(PAYLOADS))
def test_restore_datamodule_checks_the_config_it_is_given_itself(
    where: str, lenet: Path, tmp_path: Path
) -> None:
    """The second check, for a caller that read the checkpoint some other way."""
    from omegaconf import OmegaConf

    from classicnets.run.allowlist import ForeignTargetError
    from classicnets.study.rebuild import restore_datamodule

    path, marker, key = hostile(lenet, where, tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    data = OmegaConf.create(checkpoint[CONFIG_KEY]["data"])
    with pytest.raises(ForeignTargetError, match=re.escape(f"{path}: {key}='numpy.savetxt'")):
        restore_datamodule(data, checkpoint, source=str(path))
    assert not marker.exists()
