"""What a checkpoint alone rebuilds: the network, its data, the names of its classes, and the
way its test images were fed to it. Shared by eval, predict, export and the study scripts."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import torch
from lightning import LightningDataModule
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor

from classicnets.data.common import ClassMismatchError
from classicnets.data.decode import EncodedImage
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.mnist import to_lenet_input
from classicnets.module import ClassificationModule
from classicnets.run import allowlist, finite
from classicnets.run.checkpoints import CONFIG_KEY
from classicnets.run.loggers import configure_wandb, finish_loggers
from classicnets.safe_load import CorruptCheckpointError

WNID = re.compile(r"^n\d{8}$")
ILSVRC_CLASSES = 1000
MNIST_SIDE = 28  # the digits' side before LeNet-5's 2-pixel border (LeCun et al. 1998, III.A)


def restore_model(
    checkpoint: Mapping[str, Any], source: str = "the checkpoint"
) -> ClassificationModule:
    """The trained network, in eval mode: rebuilt from the hyperparameters in the checkpoint
    (the registry's network by name, plain arguments only); weights that are not all finite are
    refused, naming ``source``."""
    hparams = checkpoint["hyper_parameters"]
    allowlist.check_hyper_parameters(hparams, ClassificationModule, source)
    finite.check_weights(checkpoint["state_dict"], source)
    model = ClassificationModule(**hparams)
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


def class_names(datamodule: LightningDataModule, num_classes: int) -> list[str]:
    """Readable names per output index: the data's mapping file (``synsets.txt``, Kaggle's
    ``LOC_synset_mapping.txt``); for the 1,000 ILSVRC wnids without one, the category list
    torchvision ships; else the class folder names (MNIST: the digits)."""
    folders = class_folders(datamodule, num_classes)
    names = list(getattr(datamodule, "class_names", folders))
    if names == folders and len(folders) == ILSVRC_CLASSES and all(map(WNID.match, folders)):
        from torchvision.models import ResNet50_Weights

        # Listed in the sorted-wnid order of the ILSVRC-2012 class folders.
        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return names


def class_folders(datamodule: LightningDataModule, num_classes: int) -> list[str]:
    """The class folder of each output index (MNIST has none: its digits)."""
    return list(getattr(datamodule, "classes", [str(i) for i in range(num_classes)]))


def image_loader(datamodule: LightningDataModule) -> Callable[[bytes], Tensor]:
    """A file's bytes → the uint8 pixels the DataModule's test protocol makes of it."""
    if isinstance(datamodule, ImageNetDataModule):
        protocol = datamodule.transforms["test"]
        return lambda data: protocol(EncodedImage(data))
    return _mnist_pixels


def _mnist_pixels(data: bytes) -> Tensor:
    """A digit image as MNIST stores it: grey, 28×28, ink bright on a dark background."""
    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L").resize((MNIST_SIDE, MNIST_SIDE), Image.Resampling.BILINEAR)
    return torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).view(28, 28)


def takes_whole_images(datamodule: LightningDataModule) -> bool:
    """Whether the test protocol feeds whole images (groups of views, one image per batch)."""
    transforms = getattr(datamodule, "transforms", {})
    return bool(getattr(transforms.get("test"), "whole_image", False))


def network_input(
    datamodule: LightningDataModule, pixels: Tensor | list[list[Tensor]], device: str
) -> Tensor | list[list[Tensor]]:
    """A batch of :func:`image_loader` outputs (or one image's groups of views, for a
    whole-image protocol) → the network's float input on ``device``, through the DataModule's own
    device-side step (ImageNet: the paper's pixel scale; the digits: the recipe's input size)."""
    if isinstance(pixels, list):
        pixels = [[view.to(device) for view in group] for group in pixels]
    elif isinstance(datamodule, ImageNetDataModule):
        pixels = pixels.to(device)
    else:
        pixels = to_lenet_input(pixels.to(device))
    images, _ = datamodule.on_after_batch_transfer((pixels, None), 0)
    return images


def script_run_dir(task: str) -> Path:
    """A fresh run directory for a study script, laid out as Hydra lays out the commands':
    ``<CLASSICNETS_ROOT or .>/logs/<task>/runs/<date>_<time>``."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = Path(os.environ.get("CLASSICNETS_ROOT", ".")) / "logs" / task / "runs" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def log_image_to_wandb(png: Path, key: str, run_dir: Path) -> None:
    """Log one figure of a study script as a W&B run of its own (offline when W&B cannot be
    reached, as the commands' logger does; ``wandb sync`` uploads it later)."""
    from lightning.pytorch.loggers import WandbLogger

    node = configure_wandb(OmegaConf.create({"offline": False}), run_dir)
    logger = WandbLogger(project="classicnets", name=key, job_type=key, save_dir=str(run_dir),
                         offline=bool(node.offline))  # fmt: skip
    logger.log_image(key, [str(png)])
    finish_loggers([logger])
