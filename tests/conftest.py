"""Shared fixtures. One torch thread per test process: the suite runs beside other processes
(DDP workers, subprocess runs), where two threads per process mostly wait on each other."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from run_helpers import run_script

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


@pytest.fixture(autouse=True)
def _forget_hydra_config():
    """Each test starts outside Hydra: a config that compose_config set (in MULTIRUN mode, say)
    would otherwise reach the next test's in-process runs."""
    yield
    HydraConfig.instance().cfg = None


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


@pytest.fixture(scope="session")
def train_main() -> Callable[[DictConfig], float | None]:
    """``src/train.py``'s Hydra main; called with a composed config it runs in this process."""
    return load_entry_point("train").main


@pytest.fixture(scope="session")
def eval_main() -> Callable[[DictConfig], dict[str, float]]:
    """``src/eval.py``'s Hydra main."""
    return load_entry_point("eval").main


def run_cli(
    script: str, *overrides: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python src/<script>.py overrides...`` from the repo root, as a user would."""
    return run_script(script, *overrides, expect=0 if check else None, timeout=timeout)


@pytest.fixture(scope="session")
def fake_imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ImageNet-layout tree of real JPEGs (4 classes), shared by the whole session."""
    from classicnets.data.fake import make_fake_imagenet

    return make_fake_imagenet(tmp_path_factory.mktemp("imagenet"), 4, 2, 2, seed=0)
