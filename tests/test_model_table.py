"""scripts/model_table.py: the per-layer table and the --all summary, with AlexNet's real totals."""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from classicnets.models import list_models
from run_helpers import load_script


@pytest.fixture(scope="module")
def model_table() -> ModuleType:
    return load_script("model_table")


def test_alexnet_rows_fc_hold_the_params_convs_the_macs(model_table: ModuleType) -> None:
    rows, total_macs = model_table.layer_rows(model_table.build("alexnet"), 227)
    params = {r.name: r.params for r in rows if r.params}
    assert sum(params.values()) == 60_965_224
    assert total_macs == 724_406_816 == sum(r.macs for r in rows)
    fc_params = sum(r.params for r in rows if r.kind == "Linear")
    conv_macs = sum(r.macs for r in rows if r.kind == "Conv2d")
    assert fc_params / 60_965_224 > 0.95  # 58,631,144: fc6 alone is 62%
    assert conv_macs / total_macs > 0.9  # 665,784,864
    by_name = {r.name: r for r in rows}
    assert by_name["features.conv1"].output_shape == (96, 55, 55)
    assert by_name["features.pool5"].output_shape == (256, 6, 6)
    assert by_name["features.conv1"].activation_bytes == 96 * 55 * 55 * 4


def test_registry_name_prints_the_totals(
    model_table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_table.main(["--name", "alexnet"]) == 0
    out = capsys.readouterr().out
    assert "features.conv1" in out and "classifier.fc8" in out
    assert "params 60,965,224   GMACs 0.724" in out


def test_hydra_config_and_overrides(
    model_table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_table.main(["model=alexnet"]) == 0
    out = capsys.readouterr().out
    assert "alexnet at 227×227" in out and "params 60,965,224" in out
    assert model_table.main(["model=alexnet", "model.net.groups=1"]) == 0
    assert "params 62,378,344" in capsys.readouterr().out  # the one-GPU AlexNet


def test_googlenet_aux_heads_counted_apart(
    model_table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    model_table.main(["--name", "googlenet"])
    assert "params 6,998,552 (+6,379,728 used only in training)" in capsys.readouterr().out


def test_all_lists_every_model_beside_the_paper(
    model_table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_table.main(["--all", "[agvz]*"]) == 0  # this file's families: the others' tests
    out = capsys.readouterr().out  # cover theirs
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    rows.pop("", None)  # a wrapped citation's second line
    assert sorted(rows) == sorted(list_models("[agvz]*"))
    # The paper columns hold the papers' own figures: VGG Table 2's 144M, no MACs stated.
    assert re.search(r"143,667,240 .*144,000,000 .*19\.632 .*—", rows["vgg19"])
    assert re.search(r"60,965,224 .*60,000,000 .*0\.724 .*—", rows["alexnet"])
    assert re.search(r"6,998,552 .*1\.583 .*1\.500", rows["googlenet"])


def test_all_builds_each_network_as_its_recipe_trains_it(
    model_table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_table.main(["--all", "resnet[35]*"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    # model=resnet50 trains v1 (the stride on the first 1×1): 3.858 GMACs beside the paper's 3.8,
    # not the builder's v1.5 (4.089); model=resnet34 trains option A (no projection parameters).
    assert re.search(r"model=resnet50 .*25,557,032 .*3\.858 .*3\.800", rows["resnet50"])
    assert re.search(r"model=resnet34 .*21,623,848 .*3\.644 .*3\.600", rows["resnet34"])
