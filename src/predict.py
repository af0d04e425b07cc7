"""The top-k classes of images under a trained network, with their names and probabilities.

python src/predict.py ckpt_path=CKPT inputs=photo.jpg
python src/predict.py ckpt_path=CKPT inputs=DIR top_k=3 data.test_protocol=ten_crop

Prints a table and writes ``<run dir>/predictions.csv`` (file, rank, class_index, folder, name,
probability). Files that do not decode are named and skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig
from rich.console import Console

from classicnets.run import checkpoints, checks, guards, loggers, setup
from classicnets.run.errors import hydra_main
from classicnets.study import rebuild
from classicnets.study.evaluation import eval_data_config
from classicnets.study.prediction import list_images, predict_files, print_table, write_csv

log = logging.getLogger(__name__)


@hydra_main(config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> list:
    """Predict ``cfg.inputs`` with ``cfg.ckpt_path``; returns the rows of predictions.csv."""
    checks.positive_int("top_k", cfg.top_k)
    checks.positive_int("batch_size", cfg.batch_size)
    run_dir = setup.output_dir()
    files = list_images(cfg.inputs)
    checkpoint = checkpoints.load_checkpoint(cfg.ckpt_path)
    data_cfg = eval_data_config(cfg, checkpoint)
    datamodule = rebuild.restore_datamodule(data_cfg, checkpoint, source=cfg.ckpt_path)
    guards.check_data_keys_read(datamodule)
    device = cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    model = rebuild.restore_model(checkpoint, source=cfg.ckpt_path).to(device)
    del checkpoint

    rows, skipped = predict_files(
        model, datamodule, files, top_k=cfg.top_k, batch_size=cfg.batch_size
    )
    if skipped:
        log.warning("skipped %d undecodable files: %s", len(skipped), ", ".join(map(str, skipped)))
    print_table(rows, Console(), f"top-{cfg.top_k} — {cfg.ckpt_path}", Path(cfg.inputs))
    write_csv(rows, run_dir / "predictions.csv")
    print(f"predictions of {len(files) - len(skipped)} images written to {run_dir}/predictions.csv")
    log_to_wandb(cfg, run_dir, rows)
    return rows


def log_to_wandb(cfg: DictConfig, run_dir: Path, rows: list) -> None:
    """Each image with its top-1 class and probability as caption, when W&B is the logger."""
    run_loggers = loggers.instantiate_loggers(cfg.get("logger"), run_dir)
    try:
        for logger in run_loggers:
            if isinstance(logger, WandbLogger):
                top1 = [row for row in rows if row.rank == 1]
                captions = [f"{row.name} ({row.probability:.2f})" for row in top1]
                logger.log_image("predictions", [row.file for row in top1], caption=captions)
    finally:
        loggers.finish_loggers(run_loggers)


if __name__ == "__main__":
    main()
