"""Resumption: a killed run resumed equals one never interrupted; signals save a checkpoint; a
checkpoint is never half-written; a NaN loss leaves the last good checkpoint as it was."""

from __future__ import annotations

import errno
import logging
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from classicnets.data.mnist import MNISTDataModule
from classicnets.data.sampling import make_loader, train_sampler
from classicnets.run.callbacks.resumable import rng_state, set_rng_state
from classicnets.run.checkpoints import resume_checkpoint
from classicnets.run.errors import exit_on_user_error
from classicnets.run.loggers import wandb_run_id
from classicnets.run.resume import AtomicCheckpointIO, latest_checkpoint
from classicnets.run.safe_load import CorruptCheckpointError
from classicnets.training.module import ClassificationModule
from run_helpers import REPO, TINY, SignalAt, load, signal_at, train

# Bit-for-bit on CPU: deterministic algorithms, one thread, the test split left out.
EXACT = (
    *TINY,
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "test=false",
    "logger=none",
    "model.updates_per_step=1",
)  # a step per pattern: steps count patterns


def _assert_same_run(want: dict[str, Any], got: dict[str, Any]) -> None:
    """Two final checkpoints hold the same step, weights, optimizer state and schedules."""
    assert got["global_step"] == want["global_step"] == 15
    assert want["state_dict"].keys() == got["state_dict"].keys()
    for name, tensor in want["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    # SDLM's state, the curvature estimated at the start of each pass, matches too
    curvature = [s["curvature"] for s in want["optimizer_states"][0]["state"].values()]
    curvature_got = [s["curvature"] for s in got["optimizer_states"][0]["state"].values()]
    assert len(curvature) == 16  # LeNet-5's 16 parameter tensors
    assert all(torch.equal(a, b) for a, b in zip(curvature, curvature_got, strict=True))
    assert want["lr_schedulers"] == got["lr_schedulers"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The final checkpoint of a run never stopped (no loader workers)."""
    reference = tmp_path_factory.mktemp("reference")
    train(reference, *EXACT, f"hydra.run.dir={reference}")
    return load(reference / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_weights_of_an_uninterrupted_run(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    # Killed in the middle of the second epoch (steps 6-10); last.ckpt is from the end of the first.
    train(tmp_path, *EXACT, f"hydra.run.dir={tmp_path}", *signal_at(8, signal.SIGKILL), expect=-9)
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 5
    result = train(tmp_path, *EXACT, f"hydra.run.dir={tmp_path}")  # the same command again
    assert "resuming from" in result.stdout + result.stderr
    _assert_same_run(uninterrupted, load(tmp_path / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "every_n_steps", "stop", "exit_status", "saved"),
    [
        # SIGTERM after step 7: last.ckpt at step 8, batch 3 of 5 of the second epoch
        (0, 0, signal_at(7, signal.SIGTERM), 128 + signal.SIGTERM, 8),
        # last.ckpt every 4 steps, SIGKILL after step 9: resumed from step 8, mid-epoch
        (2, 4, signal_at(9, signal.SIGKILL), -signal.SIGKILL, 8),
    ],
    ids=["sigterm-no-workers", "sigkill-after-step-checkpoint-2-workers"],
)
def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch_bit_for_bit(
    tmp_path: Path,
    uninterrupted: dict[str, Any],
    workers: int,
    every_n_steps: int,
    stop: tuple[str, ...],
    exit_status: int,
    saved: int,
) -> None:
    run = (
        *EXACT,
        f"data.num_workers={workers}",
        f"callbacks.step_checkpoint.every_n_train_steps={every_n_steps}",
        f"hydra.run.dir={tmp_path}",
    )
    train(tmp_path, *run, *stop, expect=exit_status)
    stopped = load(tmp_path / "checkpoints" / "last.ckpt")
    assert (stopped["epoch"], stopped["global_step"]) == (1, saved)
    result = train(tmp_path, *run)
    assert "resuming from" in result.stdout + result.stderr
    assert "not resumable" not in result.stderr  # Lightning's warning for mid-epoch checkpoints
    # The same weights as the run never stopped, which had no workers: the data and their
    # distortions depend on neither the stop nor the number of workers.
    _assert_same_run(uninterrupted, load(tmp_path / "checkpoints" / "last.ckpt"))


def test_a_crash_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.arange(1000.0)}, path)

    def torn_write(obj: Any, f: Any) -> None:  # the process dies halfway through the file
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    kept = io.load_checkpoint(path)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.arange(1000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def _checkpoint(path: Path, step: int, mtime: int) -> Path:
    """A small training checkpoint (what resume checks for: weights and loop state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.full((1000,), float(step))}, "loops": {}}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_auto_resume_takes_the_newest_of_last_and_the_slurm_requeue_checkpoint(
    tmp_path: Path,
) -> None:
    assert resume_checkpoint("auto", tmp_path) is None  # a fresh directory starts fresh
    last = _checkpoint(tmp_path / "checkpoints" / "last.ckpt", 1, 1_000)
    hpc = _checkpoint(tmp_path / "hpc_ckpt_1.ckpt", 2, 2_000)
    assert resume_checkpoint("auto", tmp_path) == str(hpc)
    os.utime(last, (3_000, 3_000))
    assert latest_checkpoint(tmp_path) == last


def test_a_truncated_last_ckpt_gives_way_to_the_newest_whole_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = tmp_path / "checkpoints"
    _checkpoint(checkpoints / "best-epoch000.ckpt", 5, 1_000)
    best = _checkpoint(checkpoints / "best-epoch001.ckpt", 10, 2_000)
    last = _checkpoint(checkpoints / "last.ckpt", 12, 3_000)
    last.write_bytes(last.read_bytes()[:3_000])  # cut short by a copy or a full disk
    os.utime(last, (3_000, 3_000))
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint("auto", tmp_path) == str(best)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{last} cannot be read" in line and f"resuming from {best}" in line
    assert last.is_file()  # kept until a new last.ckpt replaces it
    # Nothing whole at all: the newest one's error, which exit_on_user_error turns into a line
    best.write_bytes(b"PK\x03\x04")
    (checkpoints / "best-epoch000.ckpt").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="is not a readable checkpoint"):
        resume_checkpoint("auto", tmp_path)


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    save = torch.save

    def disk_fills_up(obj: Any, f: Any) -> None:  # the first checkpoint fits, the next does not
        if (tmp_path / "checkpoints" / "last.ckpt").is_file():
            f.write(b"PK\x03\x04 a part")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, f)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(SystemExit) as stop:
        exit_on_user_error(_fit_lenet)(tmp_path, Callback())
    assert stop.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "no space left on the disk while writing" in line
    assert "saved before it are intact" in line and "run the same command again" in line
    monkeypatch.undo()
    kept = load(tmp_path / "checkpoints" / "last.ckpt")
    assert (kept["epoch"], kept["global_step"]) == (0, 3)  # the end of the first epoch
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_wandb_run_id_is_read_from_the_runs_wandb_wrote(tmp_path: Path) -> None:
    assert wandb_run_id(tmp_path) is None
    old = tmp_path / "wandb" / "offline-run-20260101_000000-abc123xy"
    new = tmp_path / "wandb" / "run-20260102_000000-zz9yy8xx"
    for age, run in enumerate((old, new)):
        run.mkdir(parents=True)
        os.utime(run, (1_000 + age, 1_000 + age))
    (tmp_path / "wandb" / "latest-run").symlink_to(old)
    assert wandb_run_id(tmp_path) == "zz9yy8xx"


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save({"rng": rng_state()}, tmp_path / "c.ckpt")
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(torch.load(tmp_path / "c.ckpt", weights_only=True)["rng"])
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert expected[:2] == got[:2] and torch.equal(expected[2], got[2])


class PoisonWeightsAt(Callback):
    """Turn every weight into NaN after step ``step``, as a diverging run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("nan"))


def _fit_lenet(run_dir: Path, callback: Callback, plugins: tuple[Any, ...] = ()) -> None:
    """Three epochs of three batches in this process, with the checkpoint and resumption callbacks
    of conf/callbacks/default.yaml, and ``callback``."""
    torch.manual_seed(0)
    model = ClassificationModule(
        net={"name": "lenet5"},
        num_classes=10,
        in_channels=1,
        optimizer=partial(torch.optim.SGD, lr=1e-3, momentum=0.9),
    )
    config = OmegaConf.load(REPO / "conf" / "callbacks" / "default.yaml")
    for node in config.values():
        if "dirpath" in node:
            node.dirpath = str(run_dir / "checkpoints")
    kept = ("model_checkpoint", "last_checkpoint", "rng_state", "checkpoint_on_signal")
    callbacks = [hydra.utils.instantiate(config[name]) for name in kept]
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=3,
        limit_train_batches=3,
        limit_val_batches=1,
        callbacks=[*callbacks, callback],
        plugins=[AtomicCheckpointIO(), *plugins],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )
    trainer.fit(model, datamodule=MNISTDataModule(batch_size=8, distortions=False))


def test_a_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    with pytest.raises(FloatingPointError, match=r"epoch 1, global step 4"):
        _fit_lenet(tmp_path, PoisonWeightsAt(4))
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (0, 3)  # the end of the first epoch
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_sigterm_saves_last_ckpt_and_exits_with_128_plus_the_signal(tmp_path: Path) -> None:
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        _fit_lenet(tmp_path, SignalAt(4, signal.SIGTERM))  # in epoch 1, after its first batch
    assert stop.value.code == 128 + signal.SIGTERM
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, 5)  # saved after the next batch
    assert len(last["rng_states"]) == 1
    assert signal.getsignal(signal.SIGTERM) is handler  # restored


def test_sigusr1_on_slurm_saves_last_ckpt_and_requeues_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scontrol = tmp_path / "bin" / "scontrol"  # records what it was asked to do
    scontrol.parent.mkdir()
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.args"}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}{os.pathsep}{os.environ['PATH']}")
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    for key, value in {**slurm, "SLURM_NODEID": "0", "SLURM_JOB_NAME": "train"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with pytest.raises(SystemExit) as stop:
        _fit_lenet(
            tmp_path / "run",
            SignalAt(4, signal.SIGUSR1),
            plugins=(SLURMEnvironment(auto_requeue=True),),
        )
    assert stop.value.code == 128 + signal.SIGUSR1
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 5
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]


class Noisy(torch.utils.data.Dataset):
    """Each item is its index plus noise from torch's global generator, as augmentations draw."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> torch.Tensor:
        return index + torch.rand(())


def _epochs(loader: Any, epochs: range, state: dict[str, Any] | None = None) -> list[torch.Tensor]:
    if state is not None:
        loader.load_state_dict(state)
    batches = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
        batches += list(loader)
    return batches


@pytest.mark.parametrize("workers", [0, 2])
def test_the_train_loader_resumes_at_the_next_batch_with_the_same_augmentations(
    workers: int,
) -> None:
    def loader() -> Any:
        return make_loader(
            Noisy(), batch_size=4, sampler=train_sampler(Noisy(), seed=7), num_workers=workers
        )

    torch.manual_seed(0)
    generator = torch.get_rng_state()
    want = _epochs(loader(), range(2))
    assert torch.equal(generator, torch.get_rng_state())  # loading moved no global generator
    stopped = loader()
    stopped.sampler.set_epoch(1)
    iterator = iter(stopped)
    first = [next(iterator), next(iterator)]  # two batches of the second epoch, then a stop
    state = stopped.state_dict()
    got = _epochs(loader(), range(1, 2), state)
    assert torch.equal(torch.cat(want[6:]), torch.cat(first + got))
    if workers:  # the same numbers with no workers: they depend on (seed, epoch, index) alone
        torch.manual_seed(1)
        assert torch.equal(torch.cat(want), torch.cat(_epochs(loader(), range(2))))
