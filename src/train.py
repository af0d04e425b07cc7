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
import lightning as L
from omegaconf import DictConfig, OmegaConf

from classicnets.run import (
    checkpoints,
    checks,
    finite,
    guards,
    launch,
    loggers,
    report,
    rundir,
    setup,
    temporaries,
)
from classicnets.run.callbacks.store_config import StoreConfig
from classicnets.run.errors import hydra_main
from classicnets.run.resume import CHECKPOINTS

log = logging.getLogger(__name__)


@hydra_main(config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Fit, validate and test the final model, write metrics.json; return cfg.optimized_metric."""
    launch.start_job()  # DDP's other ranks rerun this job (not the sweep) in this run directory
    setup.route_lightning_logs()
    run_dir = setup.output_dir()
    resume = rundir.claim(cfg, run_dir)  # locks it; refuses overwriting and changed configs
    cfg.seed = L.seed_everything(cfg.seed, workers=True, verbose=False)  # loader workers too
    check_required_overrides(cfg)
    checks.target_arguments(cfg, "model", "data", "callbacks", "logger")  # +model.bogus=1
    temporaries.remove_stale(run_dir / CHECKPOINTS)  # a killed run's half-written checkpoint
    if cfg.train:
        guards.check_trains(cfg.trainer)

    datamodule = hydra.utils.instantiate(cfg.data)  # fails at once on missing data
    guards.check_data_keys_read(datamodule)
    model = hydra.utils.instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        _convert_="all",
    )
    if isinstance(getattr(datamodule, "input_size", None), int):  # a crop too small for the net
        checks.input_fits(model.hparams.net, datamodule.in_channels, datamodule.input_size)
    config = OmegaConf.to_container(cfg, resolve=True)  # plain data: safe in every checkpoint
    run_loggers = loggers.instantiate_loggers(cfg.get("logger"), run_dir)
    callbacks = setup.instantiate_callbacks(cfg.get("callbacks"), with_logger=bool(run_loggers))
    callbacks.append(StoreConfig(config))
    trainer = setup.instantiate_trainer(
        cfg.trainer, callbacks=callbacks, logger=run_loggers or False
    )
    setup.check_global_batch(cfg.data.batch_size, trainer)  # before DDP starts its processes
    for logger in run_loggers:
        logger.log_hyperparams(config)

    try:
        if cfg.train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        else:
            guards.check_has_weights(resume, cfg.model.get("init_from"))
        # The papers report the final model (GoogLeNet: the Polyak average, which the callback
        # has put into the network when fitting ends), not the best-by-val checkpoint: ImageNet's
        # test split is its val split, so that choice would be made on the test images.
        weights = None if cfg.train else resume  # None: the network as fitting left it
        tested = checkpoints.final_checkpoint(trainer) if cfg.train else resume
        metrics = {}
        metrics.update(trainer.validate(model, datamodule=datamodule, ckpt_path=weights)[0])
        if cfg.test:
            metrics.update(trainer.test(model, datamodule=datamodule, ckpt_path=weights)[0])
    finally:
        loggers.finish_loggers(run_loggers)
        launch.end_job(trainer)  # the next job of a sweep starts its own DDP processes

    metrics = report.scalar_metrics(metrics)
    extra = {
        "test_checkpoint": tested,
        "best_checkpoint": checkpoints.best_checkpoint(trainer),
        "seed": cfg.seed,
    }
    report.report_metrics(metrics, run_dir, extra)
    rundir.release()  # the next job of a sweep, or a test in this process, may take it
    finite.check_metrics(finite.non_finite(metrics), run_dir / "metrics.json")
    return metrics.get(cfg.get("optimized_metric"))


def check_required_overrides(cfg: DictConfig) -> None:
    """An experiment that starts from another run (``required_overrides: [model.init_from]``)
    cannot silently start from scratch: the missing file is named before anything is built."""
    for key in cfg.get("required_overrides") or []:
        if OmegaConf.select(cfg, key) is None:
            raise FileNotFoundError(
                f"this experiment starts from a checkpoint: pass {key}=PATH (see its config file)"
            )


if __name__ == "__main__":
    main()
