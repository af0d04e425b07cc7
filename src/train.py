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
from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from classicnets import launch, pipeline
from classicnets.errors import exit_on_user_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Fit, validate and test the final model, write metrics.json; return cfg.optimized_metric."""
    launch.start_job()  # DDP's other ranks rerun this job (not the sweep) in this run directory
    pipeline.route_lightning_logs()
    run_dir = pipeline.output_dir()
    cfg.seed = pipeline.seed_everything(cfg.seed)
    check_required_overrides(cfg)

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
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    pipeline.check_global_batch(cfg.data.batch_size, trainer)  # before DDP starts its processes
    for logger in loggers:
        logger.log_hyperparams(config)

    try:
        resume = pipeline.resume_checkpoint(cfg.ckpt_path, run_dir)
        if cfg.train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        # The papers report the final model (GoogLeNet: the Polyak average, which the callback
        # has put into the network when fitting ends), not the best-by-val checkpoint: ImageNet's
        # test split is its val split, so that choice would be made on the test images.
        weights = None if cfg.train else resume  # None: the network as fitting left it
        tested = final_checkpoint(trainer) if cfg.train else resume
        metrics = {}
        metrics.update(trainer.validate(model, datamodule=datamodule, ckpt_path=weights)[0])
        if cfg.test:
            metrics.update(trainer.test(model, datamodule=datamodule, ckpt_path=weights)[0])
    finally:
        pipeline.finish_loggers(loggers)
        launch.end_job(trainer)  # the next job of a sweep starts its own DDP processes

    metrics = pipeline.scalar_metrics(metrics)
    extra = {
        "test_checkpoint": tested,
        "best_checkpoint": pipeline.best_checkpoint(trainer),
        "seed": cfg.seed,
    }
    pipeline.report_metrics(metrics, run_dir, extra)
    return metrics.get(cfg.get("optimized_metric"))


def check_required_overrides(cfg: DictConfig) -> None:
    """An experiment that starts from another run (``required_overrides: [model.init_from]``)
    cannot silently start from scratch: the missing file is named before anything is built."""
    for key in cfg.get("required_overrides") or []:
        if OmegaConf.select(cfg, key) is None:
            raise FileNotFoundError(
                f"this experiment starts from a checkpoint: pass {key}=PATH (see its config file)"
            )


def final_checkpoint(trainer: Trainer) -> str | None:
    """The file holding the final weights: what the checkpoint without a monitor (last.ckpt)
    wrote last; None when no checkpoint was written (e.g. a fast_dev_run)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            return callback.last_model_path or callback.best_model_path or None
    return None


if __name__ == "__main__":
    main()
