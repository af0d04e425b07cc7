"""Every data config builds a DataModule that keeps the written contract (data/base.py)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest

from classicnets.data.base import ClassificationDataModule
from classicnets.run.setup import compose_config
from conftest import CONF_DIR

DATA_CONFIGS = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_is_a_classification_datamodule(name: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"data={name}"], tmp_path)
    target = hydra.utils.get_class(cfg.data._target_)
    assert issubclass(target, ClassificationDataModule)
    assert not target.__abstractmethods__  # num_classes and in_channels are defined


def test_the_digits_tell_the_network_what_it_classifies(tmp_path: Path) -> None:
    datamodule = hydra.utils.instantiate(compose_config("train", [], tmp_path).data)
    assert (datamodule.num_classes, datamodule.in_channels) == (10, 1)
