"""Shared fixtures. One torch thread per test process: the suite runs beside other processes
(DDP workers, subprocess runs), where two threads per process mostly wait on each other."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_root() -> str:
    """The repository root (where conf/ and src/ live)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
