"""Evaluate a checkpoint, or an ensemble of them, with the data of the run that wrote it.

python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
python src/eval.py ckpt_path=... data.test_protocol=ten_crop   # another test protocol
python src/eval.py ckpt_path=... data=imagenet data.root=DIR   # other data altogether
python src/eval.py ckpt_path='[A.ckpt,B.ckpt,C.ckpt]'          # softmax-averaged ensemble

An ensemble reports every member (``member<i>/...``) and the ensemble (``ensemble/...``).
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from lightning import LightningDataModule, Trainer
from omegaconf import DictConfig, ListConfig

from classicnets.run import checkpoints, finite, guards, loggers, report, setup
from classicnets.run.errors import hydra_main
from classicnets.study import rebuild
from classicnets.study.ensemble import ensemble_of
from classicnets.study.evaluation import eval_data_config
from classicnets.training.module import ClassificationModule


@hydra_main(config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    """Validate and test ``cfg.ckpt_path``; writes metrics.json in this run's directory."""
    setup.route_lightning_logs()
    run_dir = setup.output_dir()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    is_ensemble = isinstance(cfg.ckpt_path, ListConfig)
    paths = [str(p) for p in cfg.ckpt_path] if is_ensemble else [str(cfg.ckpt_path)]
    loaded = [checkpoints.load_checkpoint(path) for path in paths]
    rebuild.check_same_classes(paths, loaded)
    data_cfg = eval_data_config(cfg, loaded[0])
    datamodule = rebuild.restore_datamodule(data_cfg, loaded[0], source=paths[0])
    guards.check_data_keys_read(datamodule)
    members = [rebuild.restore_model(c, source=p) for p, c in zip(paths, loaded, strict=True)]
    del loaded  # the weights now live in the members
    run_loggers = loggers.instantiate_loggers(cfg.get("logger"), run_dir)
    trainer = setup.instantiate_trainer(cfg.trainer, logger=run_loggers or False)

    metrics: dict[str, float] = {}
    try:
        if not is_ensemble:
            metrics = evaluate(trainer, members[0], datamodule, cfg.validate)
        else:
            for i, member in enumerate(members):
                found = evaluate(trainer, member, datamodule, cfg.validate)
                metrics.update(prefixed(found, f"member{i}/"))
            found = evaluate(trainer, ensemble_of(members), datamodule, cfg.validate)
            metrics.update(prefixed(found, "ensemble/"))
    finally:
        loggers.finish_loggers(run_loggers)

    metrics = report.scalar_metrics(metrics)
    report.report_metrics(metrics, run_dir, {"checkpoint": paths if is_ensemble else paths[0]})
    finite.check_metrics(finite.non_finite(metrics), run_dir / "metrics.json")
    return metrics


def evaluate(
    trainer: Trainer, model: ClassificationModule, datamodule: LightningDataModule, validate: bool
) -> dict[str, float]:
    """Test (and validate) one module; Lightning's metrics (main makes them plain floats)."""
    metrics = {}
    if validate:
        metrics.update(trainer.validate(model, datamodule=datamodule)[0])
    metrics.update(trainer.test(model, datamodule=datamodule)[0])
    return metrics


def prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {prefix + key: value for key, value in metrics.items()}


if __name__ == "__main__":
    main()
