"""Export a trained network for today's runtimes and check each file against PyTorch.

python src/export.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
python src/export.py ckpt_path=... format=onnx     # or format=pt2; default: both

Writes ``<run dir>/model.pt2`` (``torch.export``) and ``<run dir>/model.onnx`` (input ``images``
(batch, C, H, W) with a dynamic batch axis, output ``logits``), and prints for each the largest
logit difference from the eager network on a batch (ONNX run by onnxruntime).
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from classicnets.models import model_info
from classicnets.run import checkpoints, checks, setup
from classicnets.run.checks import ConfigValueError
from classicnets.run.errors import hydra_main
from classicnets.run.finite import NonFiniteError
from classicnets.study import rebuild
from classicnets.study.onnx_export import FILES, export_checked

FORMATS = ("all", *FILES)


@hydra_main(config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> float:
    """Export ``cfg.ckpt_path``; returns the largest logit difference of the files written."""
    if cfg.format not in FORMATS:
        raise ConfigValueError("format", cfg.format, f"choose one of {FORMATS}")
    checks.positive_int("check_batch", cfg.check_batch)  # before model.onnx is written
    run_dir = setup.output_dir()
    torch.manual_seed(cfg.seed)  # the check's random batch
    checkpoint = checkpoints.load_checkpoint(cfg.ckpt_path)
    model = rebuild.restore_model(checkpoint, source=cfg.ckpt_path)
    hparams = model.hparams
    # The crop the network was trained on: the data's, else the paper's (LeNet-5: 32×32).
    data = checkpoint.get(checkpoints.CONFIG_KEY, {}).get("data", {})
    size = data.get("input_size") or model_info(hparams.net["name"]).input_size
    shape = (hparams.in_channels, size, size)

    images = torch.randn(cfg.check_batch, *shape)
    kinds = FILES if cfg.format == "all" else (cfg.format,)
    files = [
        export_checked(k, model.net, hparams.net["name"], run_dir, shape, images) for k in kinds
    ]
    for file in files:
        print(
            f"wrote {file.path} (input images: batch × {' × '.join(map(str, shape))}); "
            f"{file.checked_with} vs PyTorch on {cfg.check_batch} images: largest logit "
            f"difference {file.difference:.3g} (largest logit {file.largest:.3g})"
        )
    difference = max(file.difference for file in files)
    if not math.isfinite(difference):
        for file in files:
            file.path.unlink(missing_ok=True)  # an export that was not checked is no export
        raise NonFiniteError(
            f"the network of {cfg.ckpt_path} gives NaN or infinite logits on random images, so "
            "its export cannot be checked; no exported file was kept"
        )
    return difference


if __name__ == "__main__":
    main()
