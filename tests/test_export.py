"""src/export.py: networks through torch.export (model.pt2) and ONNX with a dynamic batch, equal
to the eager network; the TorchScript ONNX exporter only where the dynamo one cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classicnets.models import get_model, model_info
from classicnets.study.onnx_export import (
    TORCHSCRIPT_ONLY,
    export_checked,
    export_onnx,
    onnx_difference,
    onnx_exporter,
    program_difference,
)
from model_utils import project_models
from run_helpers import run_cli
from study_helpers import lenet_checkpoint
from test_safe_load import assert_one_error_line, evil_checkpoint

# Exporting costs seconds of CPU a network (torch.export ~5 s for a ResNet-18, ~14 s for a
# ResNet-152; the dynamo ONNX exporter about as much again on top), so each family is exported
# by the members whose layers differ: the other depths add only more of the same blocks, the
# other VGG configurations more 3x3 convolutions or BatchNorm (exported with the ResNets).
STAND_INS = {
    "alexnet", "googlenet", "lenet5", "lenet5_modern", "mobilenet_v1", "mobilenet_v2",
    "preact_resnet18", "resnet18", "resnet50", "resnext50_32x4d", "shufflenet_v1_g3",
    "shufflenet_v2_x0_5", "vgg11_lrn", "zfnet",
}  # fmt: skip
# ONNX: one network of each kind of layer (LRN and groups, inception, BatchNorm and residuals,
# depthwise convolutions, channel shuffle), and LeNet-5 through TorchScript's exporter.
ONNX_STAND_INS = [
    "alexnet",
    "googlenet",
    "lenet5",
    "lenet5_modern",
    "mobilenet_v1",
    "resnet18",
    "shufflenet_v1_g3",
]


def network(name: str) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The network (eval mode) and the smallest input it takes: 32 pixels where its pooling
    adapts, else the paper's crop (AlexNet, ZFNet and VGG have fixed fully connected inputs)."""
    channels = 1 if name.startswith("lenet") else 3
    torch.manual_seed(0)
    net = get_model(name, num_classes=10, in_channels=channels).eval()
    for size in (32, model_info(name).input_size):
        try:
            with torch.no_grad():
                net(torch.zeros(1, channels, size, size))
            return net, (channels, size, size)
        except RuntimeError:
            continue  # too small for the network's fixed layers
    raise AssertionError(f"{name} runs at no input size")


def _assert_equal_logits(kind: str, name: str, tmp_path: Path) -> None:
    net, shape = network(name)
    torch.manual_seed(1)
    file = export_checked(kind, net, name, tmp_path, shape, torch.randn(3, *shape))
    check = program_difference if kind == "pt2" else onnx_difference
    # traced with 2 images: other batch sizes show that the batch axis is dynamic
    for difference, largest in (
        (file.difference, file.largest),
        check(file.path, net, torch.randn(1, *shape)),
    ):
        # Relative to the logits' scale: untrained deep ResNets reach logits of 10⁴ (BN
        # statistics at their initial values), where float32 rounding alone exceeds 1e-4.
        assert difference <= 1e-4 * max(1.0, largest), (difference, largest, file)


def test_every_network_family_is_exported_by_its_stand_ins() -> None:
    def family(name: str) -> str:  # resnext50_32x4d: resnext
        return name.split("_")[0].rstrip("0123456789")

    assert {family(name) for name in project_models()} == {family(name) for name in STAND_INS}
    assert set(ONNX_STAND_INS) <= STAND_INS and set(TORCHSCRIPT_ONLY) <= set(ONNX_STAND_INS)


@pytest.mark.parametrize("name", sorted(STAND_INS))
def test_torch_export_writes_a_program_with_a_dynamic_batch_and_the_eager_logits(
    name: str, tmp_path: Path
) -> None:
    _assert_equal_logits("pt2", name, tmp_path)
    assert (tmp_path / "model.pt2").is_file()


@pytest.mark.parametrize("name", ONNX_STAND_INS)
def test_onnx_has_a_dynamic_batch_and_the_eager_logits_in_onnxruntime(
    name: str, tmp_path: Path
) -> None:
    _assert_equal_logits("onnx", name, tmp_path)


@pytest.mark.parametrize("name", sorted(TORCHSCRIPT_ONLY))
def test_the_torchscript_exporter_writes_only_what_the_dynamo_one_cannot(
    name: str, tmp_path: Path
) -> None:
    assert onnx_exporter(name) == "torchscript"
    net, shape = network(name)
    with pytest.raises(torch.onnx.OnnxExporterError, match="No ONNX function found"):
        export_onnx(net, tmp_path / "model.onnx", shape, dynamo=True)


def test_export_command_writes_both_files_and_prints_each_difference(tmp_path: Path) -> None:
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "run"
    result = run_cli("export", f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}")
    for file in ("model.onnx", "model.pt2"):  # LeNet-5's 60,000 float weights
        assert (run_dir / file).stat().st_size > 200_000
    lines = [line for line in result.stdout.splitlines() if line.startswith("wrote ")]
    assert [line.split(";")[0] for line in lines] == [
        f"wrote {run_dir}/model.pt2 (input images: batch × 1 × 32 × 32)",
        f"wrote {run_dir}/model.onnx (input images: batch × 1 × 32 × 32)",
    ]
    assert "torch.export vs PyTorch on 3 images: largest logit difference" in lines[0]
    assert "onnxruntime (torchscript exporter) vs PyTorch" in lines[1]


def test_export_command_writes_only_the_format_asked_for(tmp_path: Path) -> None:
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "run"
    run_cli("export", f"ckpt_path={ckpt}", "format=pt2", f"hydra.run.dir={run_dir}")
    assert (run_dir / "model.pt2").is_file() and not (run_dir / "model.onnx").exists()


def test_export_refuses_a_checkpoint_that_carries_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    run_dir = tmp_path / "run"
    result = run_cli("export", f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}", check=False)
    assert_one_error_line(result, "evil.ckpt", "not a plain checkpoint")
    assert not marker.exists() and not (run_dir / "model.onnx").exists()
