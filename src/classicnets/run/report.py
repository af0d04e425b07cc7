"""The final metrics of a run: a table on the console and ``<run dir>/metrics.json``."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table

log = logging.getLogger(__name__)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats from a Lightning metrics dict, sorted by name."""
    out = {}
    for key, value in sorted(metrics.items()):
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[key] = number if math.isfinite(number) else float("nan")
    return out


@rank_zero_only
def report_metrics(metrics: dict[str, float], run_dir: Path, extra: dict[str, Any]) -> None:
    """Print the final metrics as a table and write them to ``<run dir>/metrics.json``."""
    table = Table(title=f"final metrics — {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    Console().print(table)
    path = run_dir / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**metrics, **extra}, indent=2) + "\n")
    os.replace(tmp, path)  # never a half-written metrics.json
    log.info("metrics written to %s", path)
