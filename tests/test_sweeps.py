"""Sweeps and launchers: the Optuna search maximises what train returns; submitit's local executor
starts one process per device (the SLURM path, Lightning starting none); the SLURM launcher
config asks SLURM for the same; launcher=local shares a node's GPUs out and runs jobs side by
side; launcher presets add their cluster environment to the trainer's keyed plugins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from hydra_plugins.classicnets_launcher.node_launcher import gpu_slots
from run_helpers import DDP, REPO, TINY, train


@pytest.mark.slow
def test_optuna_search_maximises_the_metric_train_returns(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    train(
        tmp_path,
        "hparams_search=lenet5_optuna",
        "hydra.sweeper.n_trials=2",
        *TINY,
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = {}
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        lr = next(float(o.split("=")[1]) for o in overrides if o.startswith("model.optimizer.lr="))
        trials[lr] = metrics["val/acc_top1"]
    assert len(trials) == 2  # two different learning rates were tried
    assert result["best_value"] == max(trials.values())
    assert trials[result["best_params"]["model.optimizer.lr"]] == result["best_value"]


@pytest.mark.slow
def test_submitit_local_starts_one_process_per_device_and_lightning_none(tmp_path: Path) -> None:
    sweep = tmp_path / "local"
    train(
        tmp_path,
        "-m",
        "launcher=local",
        *TINY,
        *DDP,
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    (job_logs,) = [p for p in (sweep / ".submitit").iterdir() if p.name != "%j"]
    # submitit ran two tasks of the one job; each joined the process group itself.
    assert sorted(p.name.split("_")[1] for p in job_logs.glob("*_log.out")) == ["0", "1"]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in next(job_logs.glob("*_1_log.err")).read_text()
    log = (sweep / "0" / "train.log").read_text()
    assert "MEMBER: 1/2" in log and "All distributed processes registered" in log
    assert json.loads((sweep / "0" / "metrics.json").read_text())["val/acc_top1"] > 0
    assert {p.name for p in sweep.iterdir()} == {"0", ".submitit", "multirun.yaml"}


def test_slurm_launcher_asks_for_one_task_per_gpu_and_sigusr1_before_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3", job_name="train"):
        cfg = compose(
            "train",
            overrides=[
                "launcher=slurm",
                "trainer.devices=8",
                "trainer.num_nodes=4",
                "hydra.launcher.partition=gpu",
                f"hydra.sweep.dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
    # The launcher adds its cluster environment to the trainer's keyed plugins.
    plugins = {k: p["_target_"].rsplit(".", 1)[1] for k, p in cfg.trainer.plugins.items()}
    assert plugins == {
        "checkpoint_io": "AtomicCheckpointIO",
        "cluster_environment": "SLURMEnvironment",
    }
    assert cfg.trainer.strategy == "ddp"
    # The sbatch script submitit would write for these launcher settings (as the launcher maps
    # them); submitit wants an srun on PATH, which this machine has not.
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    folder = params.pop("submitit_folder")
    for key in ("_target_", "max_num_timeout"):
        params.pop(key)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -m submitit", "uid")
    for line in (
        "--nodes=4",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--signal=USR1@120",
        "--requeue",
        "--partition=gpu",
    ):
        assert f"#SBATCH {line}\n" in sbatch
    assert "USR2" not in sbatch and "srun" in sbatch


def test_launcher_plugins_merge_into_the_trainers_keyed_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from classicnets.run import setup
    from classicnets.run.resume import AtomicCheckpointIO

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3", job_name="train"):
        cfg = compose(
            "train", overrides=["launcher=slurm", "trainer.accelerator=cpu", "trainer.devices=2"]
        )
    with open_dict(cfg):
        cfg.trainer.default_root_dir = str(tmp_path)
    # Rank 0 of a two-task SLURM step, as srun would start it.
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODELIST": "n1"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    for key in ("SLURM_NODEID", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.setenv(key, "0")
    trainer = setup.instantiate_trainer(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    # A preset's plugin is dropped by nulling its key, as a callback is.
    monkeypatch.undo()
    with open_dict(cfg):
        cfg.trainer.plugins.cluster_environment = None
    trainer = setup.instantiate_trainer(cfg.trainer, logger=False)
    assert not isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_gpu_slots_share_the_node_out() -> None:
    assert gpu_slots(range(8), 1) == [(i,) for i in range(8)]
    assert gpu_slots([0, 1, 2, 3, 4, 5, 6, 7], 2) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert gpu_slots([4, 5, 6], 2) == [(4, 5)]  # a GPU left over stays idle
    assert gpu_slots(range(8), 1, max_parallel=3) == [(0,), (1,), (2,)]
    assert gpu_slots([], 2) == [()] and gpu_slots([], 2, max_parallel=2) == [(), ()]
    with pytest.raises(ValueError, match="gpus_per_job=4 but this node has 2 GPUs"):
        gpu_slots([0, 1], 4)


@pytest.mark.slow
def test_local_launcher_runs_two_jobs_side_by_side(tmp_path: Path) -> None:
    sweep = tmp_path / "node"
    train(
        tmp_path,
        "-m",
        "launcher=local",
        *TINY,
        "trainer.devices=1",
        "seed=1,2",
        "hydra.launcher.gpus=[]",
        "hydra.launcher.max_parallel=2",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.meet._target_=run_helpers.Rendezvous",
        f"+callbacks.meet.folder={tmp_path / 'meet'}",
    )
    # Each job reached fit while the other was there (Rendezvous waits for both), in its own
    # directory, seeing no GPUs.
    times = [json.loads((sweep / job / "job_times.json").read_text()) for job in ("0", "1")]
    assert max(t["start"] for t in times) < min(t["end"] for t in times)
    assert [t["CUDA_VISIBLE_DEVICES"] for t in times] == ["", ""]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["val/acc_top1"] > 0
    assert {p.name for p in sweep.iterdir()} == {"0", "1", ".submitit", "multirun.yaml"}
