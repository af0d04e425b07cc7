"""What a checkpoint alone rebuilds: the network, its data and the names of its classes. Shared by
eval, predict, export and the study commands (the data itself turns files into the network's
input: data/base.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from lightning import LightningDataModule
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from classicnets.data.base import ClassificationDataModule
from classicnets.data.common import ClassMismatchError
from classicnets.run import allowlist, finite
from classicnets.run.checkpoints import CONFIG_KEY
from classicnets.run.loggers import finish_loggers, instantiate_loggers
from classicnets.run.safe_load import CorruptCheckpointError
from classicnets.training.module import ClassificationModule

WNID = re.compile(r"^n\d{8}$")
ILSVRC_CLASSES = 1000


def restore_model(
    checkpoint: Mapping[str, Any], source: str = "the checkpoint"
) -> ClassificationModule:
    """The trained network, in eval mode: rebuilt from the hyperparameters in the checkpoint
    (the registry's network by name, plain arguments only); weights that are not all finite are
    refused, naming ``source``."""
    hparams = checkpoint["hyper_parameters"]
    allowlist.check_hyper_parameters(hparams, ClassificationModule, source)
    finite.check_weights(checkpoint["state_dict"], source)
    model = ClassificationModule.from_hyperparameters(hparams)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def checkpoint_data_config(checkpoint: Mapping[str, Any], **changes: Any) -> DictConfig:
    """The training run's data config (resolved when it was saved) with ``changes`` on top."""
    if CONFIG_KEY not in checkpoint:
        raise CorruptCheckpointError(
            "the checkpoint carries no run config (it was not written by src/train.py), so its "
            "data is unknown; use a checkpoint from a run's checkpoints/ folder"
        )
    return OmegaConf.merge(checkpoint[CONFIG_KEY]["data"], changes)


def restore_datamodule(
    data_cfg: DictConfig, checkpoint: Mapping[str, Any], source: str = "the stored data config"
) -> LightningDataModule:
    """The DataModule of ``data_cfg`` with the state the checkpoint saved of it (ImageNet: the
    class mapping), which checks that the data's classes are the network's, or supplies them
    where the training folders are absent. Only this project's DataModules are built
    (:mod:`classicnets.run.allowlist`); any other ``_target_`` is refused, naming ``source``."""
    plain = OmegaConf.to_container(data_cfg, resolve=True)
    checked = allowlist.checked_targets(plain, source, "data")
    if not isinstance(checked, dict) or allowlist.TARGET not in checked:
        raise allowlist.ForeignTargetError(f"{source}: data names no DataModule (no _target_)")
    datamodule = hydra.utils.instantiate(checked)
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
    return datamodule


def saved_classes(checkpoint: Mapping[str, Any]) -> list[str] | None:
    """The class folders a checkpoint was trained on, when its DataModule saved them."""
    for value in checkpoint.values():
        if isinstance(value, Mapping) and "classes" in value:
            return list(value["classes"])
    return None


def check_same_classes(paths: Sequence[str], checkpoints: Sequence[Mapping[str, Any]]) -> None:
    """Ensemble members must mean the same classes by the same output indices."""
    first = checkpoints[0]
    for path, checkpoint in zip(paths[1:], checkpoints[1:], strict=True):
        n_first = first["hyper_parameters"]["num_classes"]
        n_other = checkpoint["hyper_parameters"]["num_classes"]
        if n_first != n_other or saved_classes(first) != saved_classes(checkpoint):
            how = "" if n_first != n_other else " in another order or by other names"
            raise ClassMismatchError(
                f"ensemble members disagree on their classes: {paths[0]} has {n_first}, {path} "
                f"has {n_other}{how}; average only checkpoints trained on the same class folders"
            )


def class_names(datamodule: ClassificationDataModule) -> list[str]:
    """Readable names per output index: the data's own (``synsets.txt``, Kaggle's
    ``LOC_synset_mapping.txt``, the digits); for the 1,000 ILSVRC wnids without a mapping file,
    the category list torchvision ships."""
    folders, names = list(datamodule.classes), list(datamodule.class_names)
    if names == folders and len(folders) == ILSVRC_CLASSES and all(map(WNID.match, folders)):
        from torchvision.models import ResNet50_Weights

        # Listed in the sorted-wnid order of the ILSVRC-2012 class folders.
        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return names


def log_figure(logger_cfg: DictConfig | None, run_dir: Path, key: str, png: Path) -> None:
    """Log a study command's figure to W&B when it is one of the command's loggers
    (``logger=wandb``; offline when W&B cannot be reached, ``wandb sync`` uploads it later)."""
    run_loggers = instantiate_loggers(logger_cfg, run_dir)
    try:
        for logger in run_loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key, [str(png)])
    finally:
        finish_loggers(run_loggers)
