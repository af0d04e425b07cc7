"""The registry: every network has a named builder in its family's file, found by grep."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

from classicnets.models import model_info, register_model
from model_utils import project_models
from run_helpers import REPO

MODELS = REPO / "src" / "classicnets" / "models"


def test_every_registered_network_has_a_def_of_its_name_in_its_familys_file() -> None:
    names = project_models()
    assert len(names) >= 42
    for name in names:
        builder = model_info(name).builder
        family = Path(builder.__code__.co_filename)
        assert builder.__name__ == name, name
        assert family.parent == MODELS, (name, family)  # in the family's file, not a helper
        assert re.search(rf"^def {name}\(", family.read_text(), re.MULTILINE), (name, family)


def test_a_builder_registers_under_its_own_name_once() -> None:
    @register_model(input_size=8, paper="test")
    def test_registry_builder_named_once(**kwargs: object) -> nn.Module:
        return nn.Identity()

    info = model_info("test_registry_builder_named_once")
    assert info.builder is test_registry_builder_named_once and info.input_size == 8
    with pytest.raises(ValueError, match="registered twice"):
        register_model(input_size=8, paper="test")(test_registry_builder_named_once)
