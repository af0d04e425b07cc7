"""Train a classic network with its paper's recipe.

python src/train.py                                  # LeNet-5 on MNIST (the default)
python src/train.py model=alexnet data.root=DIR      # AlexNet on ImageNet, the 2012 recipe
python src/train.py model=resnet50 trainer=gpu trainer.devices=8
python src/train.py -m model.optimizer.lr=0.01,0.05  # a sweep, one directory per job
python src/train.py --help                           # the config groups and their options
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from classicnets import launch, pipeline
from classicnets.errors import exit_on_user_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write metrics.json; return cfg.optimized_metric (sweeps)."""
    launch.start_job()  # DDP's other ranks rerun this job (not the sweep) in this run directory
    pipeline.route_lightning_logs()
    run_dir = pipeline.output_dir()
    cfg.seed = pipeline.seed_everything(cfg.seed)

    datamodule = hydra.utils.instantiate(cfg.data)  # fails at once on missing data
    model = hydra.utils.instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        _convert_="all",
    )
    config = pipeline.resolved(cfg)
    loggers = pipeline.instantiate_loggers(cfg.get("logger"), run_dir)
    callbacks = pipeline.instantiate_callbacks(cfg.get("callbacks"), with_logger=bool(loggers))
    callbacks.append(pipeline.StoreConfig(config))
    trainer = pipeline.instantiate_trainer(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    pipeline.check_global_batch(cfg.data.batch_size, trainer)  # before DDP starts its processes
    for logger in loggers:
        logger.log_hyperparams(config)

    try:
        if cfg.train:
            resume = pipeline.resume_checkpoint(cfg.ckpt_path, run_dir)
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        best = pipeline.best_checkpoint(trainer)
        metrics = {}
        metrics.update(trainer.validate(model, datamodule=datamodule, ckpt_path=best)[0])
        if cfg.test:
            metrics.update(trainer.test(model, datamodule=datamodule, ckpt_path=best)[0])
    finally:
        pipeline.finish_loggers(loggers)
        launch.end_job(trainer)  # the next job of a sweep starts its own DDP processes

    metrics = pipeline.scalar_metrics(metrics)
    pipeline.report_metrics(metrics, run_dir, {"checkpoint": best, "seed": cfg.seed})
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
