"""DDP under Hydra on CPU (gloo) with plain ``ddp``, which reruns the script for rank 1: one run
directory, one log, rank 0 writes; a signal on any rank stops all with a checkpoint; the rerun
resumes; in a sweep every job gets one directory and one W&B run, and no child starts a sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from lightning import Trainer
from omegaconf import open_dict

from classicnets.run import launch
from classicnets.run.loggers import wandb_run_id
from classicnets.run.setup import check_global_batch
from run_helpers import DDP, REPO, TINY, load, signal_at, train


def _entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.mark.slow
def test_ddp_run_stops_on_a_signal_to_rank_1_and_the_rerun_resumes(tmp_path: Path) -> None:
    run_dir, reference = tmp_path / "run", tmp_path / "reference"
    exact = (
        *TINY,
        *DDP,
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        "callbacks.checkpoint_on_signal.check_every_n_steps=1",
    )  # agree each step
    run = (*exact, "logger=wandb", f"hydra.run.dir={run_dir}")
    # SIGUSR1 (SLURM's warning) reaches rank 1 only, 5 steps an epoch: both ranks stop after
    # step 8, mid-epoch 1, with last.ckpt saved.
    train(tmp_path, *run, *signal_at(7, signal.SIGUSR1, rank=1), expect=128 + signal.SIGUSR1)
    stopped = load(run_dir / "checkpoints" / "last.ckpt")
    assert (stopped["epoch"], stopped["global_step"]) == (1, 8)
    assert len(stopped["rng_states"]) == 2  # one per rank
    first_wandb_id = wandb_run_id(run_dir)

    train(tmp_path, *run)  # the same command again resumes
    final = load(run_dir / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 15
    # ... at the next batch of the data, on both ranks: the weights of a run never stopped.
    train(tmp_path, *exact, "logger=none", "test=false", f"hydra.run.dir={reference}")
    want = load(reference / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(want[k], v) for k, v in final["state_dict"].items())
    # One run directory with one .hydra/ and one log; nothing a child wrote elsewhere.
    assert _entries(tmp_path) == {"run", "reference"}
    kept = {".hydra", ".lock", "checkpoints", "wandb", "train.log", "metrics.json"}
    assert _entries(run_dir) == kept
    log = (run_dir / "train.log").read_text()
    assert log.count("MEMBER: 1/2") == 2 and "MEMBER: 2/2" not in log  # rank 1: warnings only
    assert "stopped by signal 10 at epoch 1, global step 8" in log and "resuming from" in log
    # Rank 0 alone logged to W&B, and the rerun continued its run: two sessions, one id.
    runs = [p.name for p in (run_dir / "wandb").glob("offline-run-*")]
    assert len(runs) == 2 and {r.rsplit("-", 1)[-1] for r in runs} == {first_wandb_id}
    # Best-checkpoint tracking went on across the stop: one best file, the one the state names.
    (state,) = [v for k, v in final["callbacks"].items() if "'monitor': 'val/acc_top1'" in k]
    assert [str(p) for p in (run_dir / "checkpoints").glob("best-*.ckpt")] == [
        state["best_model_path"]
    ]


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_with_one_line_naming_it(tmp_path: Path) -> None:
    run = (*TINY, *DDP, "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={tmp_path}")
    result = train(tmp_path, *run, *signal_at(7, signal.SIGKILL, rank=1), expect=1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: DDP rank 1 was killed by SIGKILL; the other ranks were stopped. {last} is "
        "intact: run the same command again to resume from it"
    )
    assert "Traceback" not in result.stderr
    assert load(last)["global_step"] == 5  # the end of the first epoch


@pytest.mark.slow
def test_when_rank_0_is_killed_rank_1_stops_with_one_line(tmp_path: Path) -> None:
    run = (*TINY, *DDP, "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={tmp_path}")
    # train() returns when rank 1 has closed the output it shares with rank 0
    result = train(tmp_path, *run, *signal_at(7, signal.SIGKILL, rank=0), expect=-9)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: DDP rank 0 ended (its process is gone); the other ranks were stopped. {last} is "
        "intact: run the same command again to resume from it"
    )
    assert "Traceback" not in result.stderr


def test_a_rank_that_dies_while_rank_0_hangs_stops_the_job_after_the_grace(
    tmp_path: Path,
) -> None:
    # Rank 0 waits in a collective that never returns (NCCL without a timeout); rank 1 dies.
    script = f"""
import subprocess, sys, time
from pathlib import Path
from classicnets.run.launch import RankWatch
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
RankWatch([child], first_rank=1, checkpoint=Path("{tmp_path}/last.ckpt"), grace_s=1.0).start()
time.sleep(60)
"""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -signal.SIGKILL and time.monotonic() - started < 30
    assert result.stderr.strip().splitlines()[-1] == (
        "error: DDP rank 1 exited with code 3; the other ranks were stopped. no checkpoint was "
        f"saved yet ({tmp_path}/last.ckpt): the same command starts over"
    )


@pytest.mark.slow
def test_ddp_sweep_of_two_jobs_one_directory_and_one_wandb_run_each(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    train(
        tmp_path,
        "-m",
        "seed=1,2",
        *TINY,
        *DDP,
        "trainer.max_epochs=1",
        "test=false",
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
    )
    assert _entries(tmp_path) == {"sweep"}  # no run directories of children, no nested sweeps
    assert _entries(sweep) == {"0", "1", "multirun.yaml"}
    started, finished = [], []
    for job, seed in (("0", 1), ("1", 2)):
        job_dir = sweep / job
        assert {".hydra", "train.log", "metrics.json", "checkpoints", "wandb"} <= _entries(job_dir)
        assert f"seed={seed}" in (job_dir / ".hydra" / "overrides.yaml").read_text()
        (run,) = (job_dir / "wandb").glob("offline-run-*")  # rank 1 started no W&B run
        record = next(run.glob("*.wandb")).read_bytes()
        assert b"train-sweep" in record and f"train-{job}".encode() in record  # group, name
        debug = (job_dir / "wandb" / "debug.log").read_text().splitlines()
        started.append(debug[0][:23])
        finished.append(next(line for line in debug if "finishing run" in line)[:23])
    assert finished[0] < started[1]  # job 0's W&B run was finished before job 1's started


def test_global_batch_must_divide_over_the_devices_before_processes_start() -> None:
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    with pytest.raises(ValueError, match=r"data.batch_size=33 .* 2 devices"):
        check_global_batch(33, trainer)
    check_global_batch(32, trainer)


def test_children_rerun_the_job_not_the_sweep(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3", job_name="train"):
        cfg = compose(
            "train",
            overrides=[
                "seed=2",
                "trainer.devices=2",
                "hydra.sweep.dir=/s",
                "hydra.job.chdir=false",
            ],
            return_hydra_config=True,
        )
    with open_dict(cfg):  # what Hydra fills in for job 1 of `-m seed=1,2`
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.runtime.output_dir = str(tmp_path / "1")
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.num = 1
        cfg.hydra.overrides.hydra.append("hydra.mode=MULTIRUN")
    HydraConfig.instance().set_config(cfg)
    command, cwd = launch.child_command(1)
    args = command[command.index("seed=2") :]  # after python and the script (or -m module)
    assert cwd == str(tmp_path)
    assert args[:2] == ["seed=2", "trainer.devices=2"] and "-m" not in args
    assert "hydra.job.chdir=false" in args
    assert not any(a.startswith(("hydra.sweep.dir", "hydra.mode=MULTIRUN")) for a in args)
    assert args[-3:] == [
        f'hydra.run.dir="{tmp_path / "1"}"',
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]
    assert launch.sweep_id() == "train-s" and launch.job_number() == 1


def test_end_job_restores_the_environment_for_the_next_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("MASTER_ADDR", "node7")
    launch.start_job()
    monkeypatch.setenv("LOCAL_RANK", "0")  # what Lightning's launcher leaves behind
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    launch.end_job(None)
    assert "LOCAL_RANK" not in os.environ and os.environ["MASTER_ADDR"] == "node7"
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"RANK": "3", "LOCAL_RANK": "1"}, 3),  # torchrun
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, 1),  # Lightning's child inside a SLURM step
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1),  # Lightning's launcher on another node
        ({"SLURM_PROCID": "5"}, 5),  # srun, one task per GPU
        ({"SUBMITIT_LOCAL_GLOBALID": "1"}, 1),  # submitit's local executor
    ],
)
def test_global_rank_from_each_launcher(
    env: dict[str, str], rank: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launch.global_rank() == rank
