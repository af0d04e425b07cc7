"""What a folder of training runs holds: per run, the model, test protocol, seed and the final
test errors (None for a run that stopped before its test). Read by scripts/report.py and the
complexity chart of scripts/model_table.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from classicnets.run import allowlist


@dataclass(frozen=True)
class Run:
    directory: Path
    model: str
    protocol: str
    seed: int | None
    top1_error: float | None  # %, None for a run that stopped early
    top5_error: float | None


def find_runs(folders: Sequence[Path]) -> list[Run]:
    """Every training run (a ``.hydra/config.yaml`` with a model) below ``folders``, and every
    evaluation of one checkpoint (src/eval.py: another protocol for the run that wrote it)."""
    runs = []
    for folder in folders:
        for config_file in sorted(folder.rglob(".hydra/config.yaml")):
            directory = config_file.parent.parent
            run = read_run(directory) or read_eval(directory)
            if run is not None:
                runs.append(run)
    return runs


def _metrics(directory: Path) -> dict:
    metrics_file = directory / "metrics.json"
    return json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}


def _error(accuracy: float | None) -> float | None:
    return None if accuracy is None else 100 * (1 - accuracy)


def read_run(directory: Path) -> Run | None:
    """A training run; its test errors are None when it stopped before its test."""
    config_file = directory / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(config_file)
    if "data" in cfg:  # nothing is built from it here; a foreign class still marks the run bad
        allowlist.checked_targets(OmegaConf.to_container(cfg.data), str(config_file), "data")
    name = OmegaConf.select(cfg, "model.net.name")
    if name is None:  # eval, predict or export: no training run
        return None
    is_folder_data = "test_protocol" in cfg.data
    protocol = str(cfg.data.test_protocol) if is_folder_data else "mnist"
    prefix = f"test/{protocol}" if is_folder_data else "test"
    metrics = _metrics(directory)
    seed = metrics.get("seed", cfg.get("seed"))
    return Run(
        directory, str(name), protocol, None if seed is None else int(seed),
        _error(metrics.get(f"{prefix}/acc_top1")), _error(metrics.get(f"{prefix}/acc_top5")),
    )  # fmt: skip


def read_eval(directory: Path) -> Run | None:
    """A finished src/eval.py of one checkpoint, as a run of the model and seed of the training
    run that wrote it (``<run>/checkpoints/<file>.ckpt``), under the protocol it tested."""
    metrics = _metrics(directory)
    checkpoint = metrics.get("checkpoint")
    tested = [k for k in metrics if k.startswith("test/") and k.endswith("/acc_top1")]
    if not isinstance(checkpoint, str) or len(tested) != 1:  # no eval, or an ensemble
        return None
    trained = read_run(Path(checkpoint).parent.parent) if _has_config(checkpoint) else None
    if trained is None:
        return None
    prefix = tested[0].removesuffix("/acc_top1")
    protocol = prefix.removeprefix("test/") if prefix != "test" else "mnist"
    return Run(
        directory, trained.model, protocol, trained.seed,
        _error(metrics[tested[0]]), _error(metrics.get(f"{prefix}/acc_top5")),
    )  # fmt: skip


def _has_config(checkpoint: str) -> bool:
    return (Path(checkpoint).parent.parent / ".hydra" / "config.yaml").is_file()
