"""Export a trained network to ONNX and check it against PyTorch.

python src/export.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt

Writes ``<run dir>/model.onnx`` (input ``images`` (batch, C, H, W) with a dynamic batch axis,
output ``logits``) and prints the largest logit difference onnxruntime vs PyTorch on a batch.
"""

from __future__ import annotations

import math

import hydra
import torch
from omegaconf import DictConfig

from classicnets import restore
from classicnets.checks import ConfigValueError
from classicnets.errors import exit_on_user_error
from classicnets.models import model_info
from classicnets.onnx_export import export_onnx, onnx_difference
from classicnets.run import checkpoints, setup
from classicnets.run.finite import NonFiniteError

FORMATS = ("onnx",)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    """Export ``cfg.ckpt_path``; returns the largest logit difference."""
    if cfg.format not in FORMATS:
        raise ConfigValueError("format", cfg.format, f"choose one of {FORMATS}")
    run_dir = setup.output_dir()
    torch.manual_seed(cfg.seed)  # the check's random batch
    checkpoint = checkpoints.load_checkpoint(cfg.ckpt_path)
    model = restore.restore_model(checkpoint, source=cfg.ckpt_path)
    hparams = model.hparams
    # The crop the network was trained on: the data's, else the paper's (LeNet-5: 32×32).
    data = checkpoint.get(checkpoints.CONFIG_KEY, {}).get("data", {})
    size = data.get("input_size") or model_info(hparams.net["name"]).input_size
    shape = (hparams.in_channels, size, size)

    path = export_onnx(model.net, run_dir / "model.onnx", shape)
    difference, largest = onnx_difference(path, model.net, torch.randn(cfg.check_batch, *shape))
    if not math.isfinite(difference):
        path.unlink()  # an export that was not checked is no export
        raise NonFiniteError(
            f"the network of {cfg.ckpt_path} gives NaN or infinite logits on random images, so "
            "its ONNX export cannot be checked; no model.onnx was kept"
        )
    print(
        f"wrote {path} (input images: batch × {' × '.join(map(str, shape))}); onnxruntime vs "
        f"PyTorch on {cfg.check_batch} images: largest logit difference {difference:.3g} "
        f"(largest logit {largest:.3g})"
    )
    return difference


if __name__ == "__main__":
    main()
