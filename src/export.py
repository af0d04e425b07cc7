"""Export a trained network to ONNX and check it against PyTorch.

python src/export.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt

Writes ``<run dir>/model.onnx`` (input ``images`` (batch, C, H, W) with a dynamic batch axis,
output ``logits``) and prints the largest logit difference onnxruntime vs PyTorch on a batch.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from classicnets import checks, restore
from classicnets.checks import ConfigValueError
from classicnets.errors import hydra_main
from classicnets.models import model_info
from classicnets.onnx_export import export_onnx, onnx_difference
from classicnets.run import checkpoints, setup

FORMATS = ("onnx",)


@hydra_main(config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> float:
    """Export ``cfg.ckpt_path``; returns the largest logit difference."""
    if cfg.format not in FORMATS:
        raise ConfigValueError("format", cfg.format, f"choose one of {FORMATS}")
    checks.positive_int("check_batch", cfg.check_batch)  # before model.onnx is written
    run_dir = setup.output_dir()
    torch.manual_seed(cfg.seed)  # the check's random batch
    checkpoint = checkpoints.load_checkpoint(cfg.ckpt_path)
    model = restore.restore_model(checkpoint)
    hparams = model.hparams
    # The crop the network was trained on: the data's, else the paper's (LeNet-5: 32×32).
    data = checkpoint.get(checkpoints.CONFIG_KEY, {}).get("data", {})
    size = data.get("input_size") or model_info(hparams.net["name"]).input_size
    shape = (hparams.in_channels, size, size)

    path = export_onnx(model.net, run_dir / "model.onnx", shape)
    difference, largest = onnx_difference(path, model.net, torch.randn(cfg.check_batch, *shape))
    print(
        f"wrote {path} (input images: batch × {' × '.join(map(str, shape))}); onnxruntime vs "
        f"PyTorch on {cfg.check_batch} images: largest logit difference {difference:.3g} "
        f"(largest logit {largest:.3g})"
    )
    return difference


if __name__ == "__main__":
    main()
