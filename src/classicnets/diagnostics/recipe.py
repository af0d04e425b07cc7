"""A recipe composed the way ``src/train.py`` composes it, for the diagnostic scripts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def compose_recipe(
    overrides: Sequence[str], output_dir: Path, conf_dir: Path = CONF_DIR
) -> DictConfig:
    """``conf/train.yaml`` with ``overrides`` (``model=resnet50 data.batch_size=1024``), as
    ``python src/train.py overrides...`` would run it with ``output_dir`` as its run directory.
    Hydra's own errors (an unknown ``model=NAME``, a misspelt key) propagate."""
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)  # ${hydra:runtime.output_dir} resolves to output_dir
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def recipe_name(overrides: Sequence[str]) -> str:
    """The ``model=NAME`` of the overrides (``lenet5``, the default, without one)."""
    names = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "model"]
    return names[-1] if names else "lenet5"


def overridden(overrides: Sequence[str], key: str) -> bool:
    """Whether the overrides set ``key`` (``data.root``)."""
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def one_line(err: Exception) -> str:
    """Hydra's message on one line: an unknown ``model=NAME`` lists the options below it (its
    config search path, after them, is left out)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    first, *rest = lines
    if len(rest) < 2:
        return " ".join(lines)
    return f"{first}; {rest[0].rstrip(':').lower()}: {', '.join(rest[1:])}"


def console_logging() -> None:
    """Warnings to stderr, once each: ``exit_on_user_error`` logs its ``error:`` line (for a run's
    log file) and prints it, and a script has no log file, so the logged copy is dropped."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("classicnets").addFilter(
        lambda record: not record.getMessage().startswith("error: ")
    )
