"""Shared fixtures. One torch thread per test process: `make test` runs a pytest worker per core
(pytest-xdist), beside other processes (DDP workers, subprocess runs), where two threads per
process mostly wait on each other."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from run_helpers import load_entry_point

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _forget_hydra_config():
    """Each test starts outside Hydra: a config that compose_config set (in MULTIRUN mode, say)
    would otherwise reach the next test's in-process runs. Likewise the logging set-up: an
    in-process run or a script's ``logging.basicConfig`` adds handlers bound to this test's
    captured streams, which the next test would find closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    HydraConfig.instance().cfg = None
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def train_main() -> Callable[[DictConfig], float | None]:
    """``src/train.py``'s Hydra main; called with a composed config it runs in this process."""
    return load_entry_point("train").main


@pytest.fixture(scope="session")
def eval_main() -> Callable[[DictConfig], dict[str, float]]:
    """``src/eval.py``'s Hydra main."""
    return load_entry_point("eval").main


@pytest.fixture(scope="session")
def fake_imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ImageNet-layout tree of real JPEGs (4 classes), shared by the whole session."""
    from classicnets.data.fake import make_fake_imagenet

    return make_fake_imagenet(tmp_path_factory.mktemp("imagenet"), 4, 2, 2, seed=0)
