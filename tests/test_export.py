"""src/export.py: every registered network as ONNX with a dynamic batch, equal to PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classicnets.models import get_model, list_models, model_info
from classicnets.onnx_export import export_onnx, onnx_difference
from conftest import run_cli
from study_helpers import lenet_checkpoint
from test_safe_load import assert_one_error_line, evil_checkpoint

# Each VGG costs 12-25 s to export and check on 2 cores (400 MB of fully connected weights at its
# fixed 224 input), so A-LRN stands for the family: the other configurations add only more 3×3
# convolutions (B, D, E) or BatchNorm (exported with every ResNet).
OTHER_VGGS = {n for n in list_models("vgg*") if n != "vgg11_lrn"}
NETWORKS = [name for name in list_models() if name not in OTHER_VGGS]


def exported(name: str, tmp_path: Path) -> tuple[torch.nn.Module, Path, tuple[int, int, int]]:
    """The network exported at the smallest input it takes: 32 pixels where its pooling adapts,
    else the paper's crop (AlexNet, ZFNet and VGG have fixed fully connected inputs)."""
    channels = 1 if name.startswith("lenet") else 3
    torch.manual_seed(0)
    net = get_model(name, num_classes=10, in_channels=channels).eval()
    for size in (32, model_info(name).input_size):
        shape = (channels, size, size)
        try:
            with torch.no_grad():
                net(torch.zeros(1, *shape))
            return net, export_onnx(net, tmp_path / "model.onnx", shape), shape
        except (RuntimeError, torch.onnx.errors.OnnxExporterError):
            continue  # too small for the network's fixed layers, or for its pooling's export
    raise AssertionError(f"{name} exports at no input size")


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_exports_with_a_dynamic_batch_and_pytorch_logits(
    name: str, tmp_path: Path
) -> None:
    net, path, shape = exported(name, tmp_path)
    torch.manual_seed(1)
    difference, largest = onnx_difference(path, net, torch.randn(3, *shape))  # traced with 2
    # Relative to the logits' scale: untrained deep ResNets reach logits of 10⁴ (BN statistics
    # at their initial values), where float32 rounding alone exceeds 1e-4.
    assert difference <= 1e-4 * max(1.0, largest), (difference, largest)


def test_export_command_writes_model_onnx_and_prints_the_difference(tmp_path: Path) -> None:
    ckpt = lenet_checkpoint(tmp_path / "lenet.ckpt")
    run_dir = tmp_path / "run"
    result = run_cli("export", f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}")
    assert (run_dir / "model.onnx").stat().st_size > 200_000  # LeNet-5's 60,000 float weights
    assert f"wrote {run_dir}/model.onnx (input images: batch × 1 × 32 × 32)" in result.stdout
    assert "largest logit difference" in result.stdout


def test_export_refuses_a_checkpoint_that_carries_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    run_dir = tmp_path / "run"
    result = run_cli("export", f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}", check=False)
    assert_one_error_line(result, "evil.ckpt", "not a plain checkpoint")
    assert not marker.exists() and not (run_dir / "model.onnx").exists()
