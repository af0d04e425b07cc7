"""Evaluate a checkpoint with the data of the run that wrote it.

python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
python src/eval.py ckpt_path=... data.test_protocol=ten_crop   # another test protocol
python src/eval.py ckpt_path=... data=imagenet data.root=DIR   # other data altogether
"""

from __future__ import annotations

import hydra
import lightning as L
from omegaconf import DictConfig

from classicnets.errors import exit_on_user_error
from classicnets.module import ClassificationModule
from classicnets.run import checkpoints, loggers, report, setup
from classicnets.run.evaluation import eval_data_config


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> dict[str, float]:
    """Validate and test ``cfg.ckpt_path``; writes metrics.json in this run's directory."""
    setup.route_lightning_logs()
    run_dir = setup.output_dir()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    checkpoint = checkpoints.load_checkpoint(cfg.ckpt_path)
    data_cfg = eval_data_config(cfg, checkpoint)
    datamodule = hydra.utils.instantiate(data_cfg)
    # What Lightning saved of the DataModule (ImageNet: the class mapping). Restoring it checks
    # that the data's classes are the network's, or supplies them where the folders are absent.
    datamodule_state = checkpoint.get(type(datamodule).__qualname__)
    if datamodule_state:
        datamodule.load_state_dict(datamodule_state)
    # The checkpoint is already in memory: rebuild the network from its hyperparameters rather
    # than reading the file a second time (load_from_checkpoint would).
    model = ClassificationModule(**checkpoint["hyper_parameters"])
    model.load_state_dict(checkpoint["state_dict"])
    run_loggers = loggers.instantiate_loggers(cfg.get("logger"), run_dir)
    trainer = setup.instantiate_trainer(cfg.trainer, logger=run_loggers or False)

    metrics = {}
    try:
        if cfg.validate:
            metrics.update(trainer.validate(model, datamodule=datamodule)[0])
        metrics.update(trainer.test(model, datamodule=datamodule)[0])
    finally:
        loggers.finish_loggers(run_loggers)

    metrics = report.scalar_metrics(metrics)
    report.report_metrics(metrics, run_dir, {"checkpoint": cfg.ckpt_path})
    return metrics


if __name__ == "__main__":
    main()
