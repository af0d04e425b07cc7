"""A run directory belongs to one run: unique names, a lock, no new run over a finished one, and a
resume that refuses a config computing something else before it writes anything."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from classicnets.run import rundir
from classicnets.run.setup import compose_config
from run_helpers import REPO, TINY, load, train

RUN = (*TINY, "trainer.max_epochs=1", "logger=none", "test=false")


def _hydra_config(tmp_path: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", [f"paths.log_dir={tmp_path}"], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    return cfg


def test_run_directories_of_one_second_differ_and_keep_the_time_readable(tmp_path: Path) -> None:
    names = {Path(_hydra_config(tmp_path).hydra.run.dir).name for _ in range(20)}
    assert len(names) == 20  # composed within a second or two
    for name in names:  # e.g. 2026-12-06_11-31-20_d2648d
        date, clock, suffix = name.split("_")
        assert time.strptime(f"{date}_{clock}", "%Y-%m-%d_%H-%M-%S")
        assert len(suffix) == 6 and int(suffix, 16) >= 0


def test_one_config_resolves_one_sweep_directory(tmp_path: Path) -> None:
    # Hydra copies the resolver cache into every job's config (also jobs sent to other nodes
    # pickled), so the jobs of a sweep agree on its directory.
    cfg = _hydra_config(tmp_path)
    sweep = cfg.hydra.sweep.dir
    copied = pickle.loads(pickle.dumps(cfg))
    assert copied.hydra.sweep.dir == sweep == cfg.hydra.sweep.dir
    assert sweep[-6:] == cfg.hydra.run.dir[-6:]


@pytest.mark.slow
def test_two_runs_started_together_keep_their_own_results(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "CLASSICNETS_DATA": os.environ.get("CLASSICNETS_DATA", str(REPO / "data")),
    }
    runs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "src" / "train.py"), *RUN, f"seed={seed}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for run in runs:
        assert run.wait(timeout=240) == 0, run.stderr.read()[-3000:]
    metrics = sorted((tmp_path / "logs" / "train" / "runs").glob("*/metrics.json"))
    assert len(metrics) == 2
    assert {json.loads(m.read_text())["seed"] for m in metrics} == {1, 2}
    for m in metrics:
        assert (m.parent / "checkpoints" / "last.ckpt").is_file()


def test_a_second_process_cannot_lock_a_run_directory_until_the_first_ends(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from classicnets.run import rundir; rundir.lock(Path(sys.argv[1])); "
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert (tmp_path / rundir.LOCK_FILE).read_text().strip() == str(holder.pid)
        with pytest.raises(
            rundir.RunDirError, match=f"in use by another process \\(pid {holder.pid}"
        ):
            rundir.lock(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without cleaning up: the OS drops its lock
        holder.wait()
    rundir.lock(tmp_path)  # no stale lock
    rundir.release()


def test_a_second_train_in_a_busy_run_directory_refuses_in_one_line(tmp_path: Path) -> None:
    rundir.lock(tmp_path)  # this process plays the first run
    try:
        result = train(tmp_path, *RUN, f"hydra.run.dir={tmp_path}", expect=2)
    finally:
        rundir.release()
    assert result.stderr.strip().splitlines()[-1].startswith("error: run directory")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".hydra").exists()  # it wrote nothing


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished")
    train(run_dir, *RUN, f"hydra.run.dir={run_dir}")
    return run_dir


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    files = [run_dir / "metrics.json", run_dir / ".hydra" / "config.yaml"]
    files += sorted((run_dir / "checkpoints").glob("*.ckpt"))
    return {str(f): f.read_bytes() for f in files}


def test_a_new_run_never_writes_over_a_finished_one(finished: Path) -> None:
    before = _snapshot(finished)
    result = train(finished, *RUN, f"hydra.run.dir={finished}", "ckpt_path=null", expect=2)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: run directory {finished} already holds a run")
    assert "ckpt_path=auto" in last
    assert _snapshot(finished) == before


def test_a_resume_with_another_learning_rate_is_refused_before_anything_is_written(
    finished: Path,
) -> None:
    before = _snapshot(finished)
    lr = OmegaConf.load(finished / ".hydra" / "config.yaml").model.optimizer.lr
    result = train(
        finished, *RUN, f"hydra.run.dir={finished}", f"model.optimizer.lr={lr * 2}", expect=2
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot resume") and f"model.optimizer.lr {lr!r} ->" in last
    assert "Traceback" not in result.stderr
    assert _snapshot(finished) == before


def test_a_resume_with_more_epochs_and_workers_goes_on_and_logs_the_changes(
    finished: Path, tmp_path: Path
) -> None:
    # On a copy: the other tests of the module keep the finished run as it was.
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    result = train(
        run_dir, *RUN, f"hydra.run.dir={run_dir}", "trainer.max_epochs=2", "data.num_workers=1"
    )
    log = result.stdout + result.stderr
    assert "resuming with trainer.max_epochs 1 -> 2" in log
    assert "resuming with data.num_workers 0 -> 1" in log
    assert load(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").trainer.max_epochs == 2


def _config(overrides: list[str], run_dir: Path) -> dict:
    cfg = compose_config("train", overrides, run_dir)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (["model=lenet5_modern"], "model."),
        (["model.optimizer.lr=0.5"], "model.optimizer.lr"),
        (["data.batch_size=2"], "data.batch_size"),
        (["seed=7"], "seed"),
        (["trainer.precision=bf16-mixed"], "trainer.precision"),
        (["trainer.accumulate_grad_batches=2"], "trainer.accumulate_grad_batches"),
        (["callbacks.sdlm_curvature=null"], "callbacks.sdlm_curvature"),
        (["data.distortions=false"], "data.distortions"),
    ],
)
def test_a_resume_that_computes_something_else_names_the_keys(
    tmp_path: Path, change: list[str], refused: str
) -> None:
    stored = _config([], tmp_path)
    with pytest.raises(rundir.RunDirError, match="computes something else: ") as error:
        rundir.check_same_computation(stored, _config(change, tmp_path), "last.ckpt")
    assert f" {refused}" in str(error.value)


@pytest.mark.parametrize(
    "change",
    [
        ["trainer.max_epochs=40"],
        ["trainer.devices=2", "trainer.strategy=ddp"],  # the same global batch
        ["data.num_workers=3", "data.root=/elsewhere"],
        ["logger=none", "callbacks.progress_bar=null", "paths.log_dir=/else"],
        ["+callbacks.extra._target_=lightning.pytorch.callbacks.Timer"],
    ],
)
def test_a_resume_may_change_what_does_not_change_the_computation(
    tmp_path: Path, change: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    stored = _config([], tmp_path)
    with caplog.at_level("INFO", logger="classicnets.run.rundir"):
        rundir.check_same_computation(stored, _config(change, tmp_path), "last.ckpt")
    assert "resuming with" in caplog.text


@pytest.mark.parametrize("recipe", ["lenet5", "resnet18"])
def test_a_config_stored_before_the_package_move_compares_equal_to_todays(
    recipe: str, tmp_path: Path
) -> None:
    """A run started by an older version (classes at their old dotted names, the general module
    with ``updates_per_step``) resumes: its stored config, migrated, is today's config."""
    cfg = compose_config("train", [f"model={recipe}"], tmp_path)
    today = OmegaConf.to_container(cfg, resolve=False)
    today.pop("hydra", None)
    old = json.loads(json.dumps(today))
    old["model"]["_target_"] = "classicnets.module.ClassificationModule"
    old["model"].setdefault("updates_per_step", 1)
    for name, node in old["callbacks"].items():
        if isinstance(node, dict) and str(node.get("_target_", "")).startswith("classicnets."):
            target = node["_target_"]
            for new, former in (
                ("classicnets.run.callbacks.", "classicnets.callbacks."),
                ("classicnets.training.callbacks.onednn", "classicnets.callbacks.onednn"),
                ("classicnets.training.callbacks.", "classicnets.callbacks."),
            ):
                target = target.replace(new, former)
            old["callbacks"][name]["_target_"] = target
    assert old != today
    rundir.check_same_computation(rundir.migrated(old), today, "old.ckpt")  # no error
    assert rundir.migrated(old)["model"] == today["model"]
