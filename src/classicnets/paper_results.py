"""The papers' headline ImageNet validation errors, to print beside ours (the reproduction
report, the complexity chart). Transcribed from /work/shared/AUDIT-recipes.md §4, with its
"verified"/"recalled" marks; docs/recipes.md carries the same table. Errors in %.

``protocol`` names our test protocol nearest the paper's (data.test_protocol): ``center_crop``
stands for any single-scale single-crop figure (VGG's Table 3 is dense evaluation at one scale),
``mnist`` for LeNet-5's test set.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperResult:
    model: str  # registry name
    protocol: str  # center_crop | ten_crop | googlenet_144 | multi_scale | mnist
    top1: float | None  # error %, None where the paper gives top-5 only
    top5: float | None
    source: str
    status: str  # "verified" or "recalled" (AUDIT-recipes.md §4)


_r = PaperResult  # short rows below: model, protocol, top-1, top-5, source, status


VGG, RESNET = "Simonyan & Zisserman 2014", "He et al. 2015"
GOOGLENET, RESNET_README = "Szegedy et al. 2014", "KaimingHe/deep-residual-networks README"

# fmt: off
PAPER_RESULTS: tuple[PaperResult, ...] = (
    _r("lenet5", "mnist", 0.95, None, "LeCun et al. 1998 §III.C (0.8 distorted)", "recalled"),
    _r("alexnet", "ten_crop", 40.7, 18.2, "Krizhevsky et al. 2012, Table 2, 1 CNN", "recalled"),
    _r("zfnet", "ten_crop", 38.4, 16.5, "Zeiler & Fergus 2013, Table 2, 1 net", "recalled"),
    _r("vgg11", "center_crop", 29.6, 10.4, f"{VGG}, Table 3, S=Q=256 (dense)", "recalled"),
    _r("vgg13", "center_crop", 28.7, 9.9, f"{VGG}, Table 3, S=Q=256 (dense)", "recalled"),
    _r("vgg16", "center_crop", 25.6, 8.1, f"{VGG}, Table 3, Q=384 (dense)", "recalled"),
    _r("vgg16", "multi_scale", 24.6, 7.5, f"{VGG}, Table 5, multi-crop", "verified"),
    _r("vgg19", "center_crop", 25.5, 8.0, f"{VGG}, Table 3, Q=384 (dense)", "recalled"),
    _r("vgg19", "multi_scale", 24.6, 7.4, f"{VGG}, Table 5, multi-crop", "verified"),
    _r("googlenet", "center_crop", None, 10.07, f"{GOOGLENET}, Table 5, 1 crop", "verified"),
    _r("googlenet", "ten_crop", None, 9.15, f"{GOOGLENET}, Table 5, 10 crops", "verified"),
    _r("googlenet", "googlenet_144", None, 7.89, f"{GOOGLENET}, Table 5, 144 crops", "verified"),
    _r("resnet18", "ten_crop", 27.88, None, f"{RESNET}, Table 2 (option A)", "verified"),
    _r("resnet34", "ten_crop", 24.52, 7.46, f"{RESNET}, Table 3 (option B)", "verified"),
    _r("resnet50", "ten_crop", 22.85, 6.71, f"{RESNET}, Table 3", "verified"),
    _r("resnet50", "center_crop", 24.7, 7.8, RESNET_README, "verified"),
    _r("resnet101", "ten_crop", 21.75, 6.05, f"{RESNET}, Table 3", "verified"),
    _r("resnet101", "center_crop", 23.6, 7.1, RESNET_README, "verified"),
    _r("resnet152", "ten_crop", 21.43, 5.71, f"{RESNET}, Table 3", "verified"),
    _r("resnet152", "center_crop", 23.0, 6.7, RESNET_README, "verified"),
    _r("preact_resnet152", "center_crop", 21.1, 5.5, "He et al. 2016, Table 5 (320 crop)",
       "verified"),
    _r("resnext50_32x4d", "center_crop", 22.2, None, "Xie et al. 2017, Table 3", "verified"),
    _r("mobilenet_v1", "center_crop", 29.4, None, "Howard et al. 2017", "recalled"),
    _r("mobilenet_v2", "center_crop", 28.0, None, "Sandler et al. 2018, Table 4", "verified"),
    _r("shufflenet_v1_g3", "center_crop", 32.6, None, "Zhang et al. 2017, Table 2", "recalled"),
    _r("shufflenet_v1_g8", "center_crop", 32.4, None, "Zhang et al. 2017, Table 2", "recalled"),
    _r("shufflenet_v2_x0_5", "center_crop", 39.7, None, "Ma et al. 2018", "recalled"),
    _r("shufflenet_v2_x1_0", "center_crop", 30.6, None, "Ma et al. 2018", "recalled"),
    _r("shufflenet_v2_x1_5", "center_crop", 27.4, None, "Ma et al. 2018", "recalled"),
    _r("shufflenet_v2_x2_0", "center_crop", 25.1, None, "Ma et al. 2018", "recalled"),
)
# fmt: on


def paper_result(model: str, protocol: str) -> PaperResult | None:
    """The paper's figure for ``model`` under ``protocol``, if the paper gives one."""
    return next((r for r in PAPER_RESULTS if r.model == model and r.protocol == protocol), None)


def headline(model: str) -> PaperResult | None:
    """The paper's single-crop figure if there is one (what the complexity chart compares),
    else its first listed one."""
    found = [r for r in PAPER_RESULTS if r.model == model]
    return next((r for r in found if r.protocol == "center_crop"), found[0] if found else None)
