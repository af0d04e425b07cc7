"""What a folder of training runs holds: per run, the model, test protocol, seed and the final
test errors (None for a run that stopped before its test). Read by scripts/report.py and the
complexity chart of scripts/model_table.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf


@dataclass(frozen=True)
class Run:
    directory: Path
    model: str
    protocol: str
    seed: int | None
    top1_error: float | None  # %, None for a run that stopped early
    top5_error: float | None


def find_runs(folders: Sequence[Path]) -> list[Run]:
    """Every training run (a ``.hydra/config.yaml`` with a model) below ``folders``."""
    runs = []
    for folder in folders:
        for config_file in sorted(folder.rglob(".hydra/config.yaml")):
            run = read_run(config_file.parent.parent)
            if run is not None:
                runs.append(run)
    return runs


def read_run(directory: Path) -> Run | None:
    cfg = OmegaConf.load(directory / ".hydra" / "config.yaml")
    name = OmegaConf.select(cfg, "model.net.name")
    if name is None:  # eval, predict or export: no training run
        return None
    is_folder_data = "test_protocol" in cfg.data
    protocol = str(cfg.data.test_protocol) if is_folder_data else "mnist"
    prefix = f"test/{protocol}" if is_folder_data else "test"
    metrics_file = directory / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    top1, top5 = metrics.get(f"{prefix}/acc_top1"), metrics.get(f"{prefix}/acc_top5")
    seed = metrics.get("seed", cfg.get("seed"))
    return Run(
        directory, str(name), protocol, None if seed is None else int(seed),
        None if top1 is None else 100 * (1 - top1), None if top5 is None else 100 * (1 - top5),
    )  # fmt: skip
