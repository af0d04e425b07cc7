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

from classicnets.run import temporaries
from classicnets.run.resume import DISK_FULL, DiskFullError

log = logging.getLogger(__name__)

METRICS_ADVICE = (
    "no metrics.json was written and the checkpoints are intact. Free space there and run the "
    "same command again"
)


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
    write_metrics(run_dir / "metrics.json", {**metrics, **extra})
    log.info("metrics written to %s", run_dir / "metrics.json")


def write_metrics(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as JSON, atomically: never a half-written file, never an empty
    temporary one. A metric that is NaN or infinite is written as ``null`` (JSON has no NaN);
    the command then ends with an error naming it (:func:`classicnets.run.finite.check_metrics`)."""
    temporaries.remove_stale(path.parent)
    plain = {k: None if _is_nan_or_inf(v) else v for k, v in content.items()}
    tmp = temporaries.temporary_path(path)
    try:
        tmp.write_text(json.dumps(plain, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in DISK_FULL:
            raise DiskFullError(path, METRICS_ADVICE) from None
        raise


def _is_nan_or_inf(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
