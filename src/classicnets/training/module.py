"""One LightningModule for every architecture: the network comes from the registry by name."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim import Optimizer
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from classicnets.models import get_model, model_info
from classicnets.models.init_from import init_from as copy_weights_from
from classicnets.models.registry import NETWORK_SWITCHES
from classicnets.optim.build import (
    OptimizerFactory,
    OptimizerRecipe,
    RunSize,
    SchedulerFactory,
    build_optimization,
)
from classicnets.run import checks, compat
from classicnets.training.step_window import StepWindow

log = logging.getLogger(__name__)

# Hyperparameters that older checkpoints carry and this module does not take: how their training
# stepped (``updates_per_step``, now the per-pattern module's), which evaluation does not use.
RETIRED_HYPERPARAMETERS = ("updates_per_step",)


NO_DECAY_KINDS = ("bias", "norm", "depthwise")


def parameter_groups(net: nn.Module, no_weight_decay: Sequence[str]) -> list[dict[str, Any]]:
    """The network's parameters in two groups: the second, weight decay 0, holds the kinds named
    in ``no_weight_decay`` — ``bias``, ``norm`` (all BN/GN/LN parameters), ``depthwise`` (3×3
    depthwise filters: MobileNet section 3.2, "very little or no weight decay")."""
    unknown = set(no_weight_decay) - set(NO_DECAY_KINDS)
    if unknown:
        raise checks.ConfigValueError(
            "model.no_weight_decay",
            list(no_weight_decay),
            f"{', '.join(sorted(unknown))} is not a kind; name some of {', '.join(NO_DECAY_KINDS)}",
        )
    decay: list[nn.Parameter] = []
    spared: list[nn.Parameter] = []
    for module in net.modules():
        is_norm = isinstance(module, compat.NORM_LAYERS)
        is_depthwise = isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            spare = (
                ("bias" in no_weight_decay and name == "bias")
                or ("norm" in no_weight_decay and is_norm)
                or ("depthwise" in no_weight_decay and is_depthwise and name == "weight")
            )
            (spared if spare else decay).append(param)
    return [{"params": decay}, {"params": spared, "weight_decay": 0.0}]


def accuracy_metrics(num_classes: int, top5: bool, prefix: str | None = None) -> MetricCollection:
    """Top-1 (and top-5) accuracy over all samples, the figure the papers report."""
    metrics = {"acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if top5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)


class ClassificationModule(LightningModule):
    """Image classification with any registered network.

    Args:
        net: registry name under ``name`` plus the builder's keyword arguments.
        num_classes, in_channels: taken from the data, passed to the builder.
        optimizer: a partial optimizer (``_partial_: true`` in config), called with the parameters.
        scheduler: a partial LR scheduler called with the optimizer, or None.
        scheduler_config: Lightning's scheduler settings (interval, frequency, monitor).
        aux_loss_weights: weights of the auxiliary heads' losses (GoogLeNet: 0.3 each).
        label_smoothing: as in ``F.cross_entropy``.
        no_weight_decay: parameter kinds kept out of weight decay (see ``parameter_groups``).
        reference_batch_size, scale_lr, warmup_epochs: the linear scaling rule and its warm-up
            (``classicnets.optim.build.OptimizerRecipe``).
        batch_size: this run's global batch.
        compile: ``torch.compile`` the network (``model.compile=true``); a string names the
            backend (``aot_eager``: traced, no code generation, a quick check that it compiles).
        check_every_n_steps: how often the ranks agree that the loss is finite (one host sync);
            a non-finite loss stops the run within this many steps, before any checkpoint.
        init_from: a checkpoint or weights file the network starts from (``models/init_from.py``).
    """

    # Constructor arguments that are not hyperparameters of the trained network: the factories
    # are code (train.py stores their config), the init_from file only the start (a checkpoint of
    # this run rebuilds without it). A subclass adds how it steps: evaluation rebuilds a
    # ClassificationModule from a checkpoint's hyperparameters (``from_hyperparameters``).
    not_hyperparameters: tuple[str, ...] = ("optimizer", "scheduler", "init_from")

    def __init__(
        self,
        net: Mapping[str, Any],
        num_classes: int,
        in_channels: int,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_config: Mapping[str, Any] | None = None,
        aux_loss_weights: Sequence[float] = (),
        label_smoothing: float = 0.0,
        no_weight_decay: Sequence[str] = (),
        reference_batch_size: int | None = None,
        batch_size: int | None = None,
        scale_lr: bool = True,
        warmup_epochs: float = 5.0,
        compile: bool | str = False,
        check_every_n_steps: int = 100,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        checks.positive_int("model.check_every_n_steps", check_every_n_steps)
        self.save_hyperparameters(ignore=list(self.not_hyperparameters))
        net_kwargs = {k: v for k, v in net.items() if k != "name"}
        builder_kwargs = {k: v for k, v in net_kwargs.items() if k not in NETWORK_SWITCHES}
        checks.builder_arguments(
            "model.net", net["name"], model_info(net["name"]).builder, builder_kwargs
        )
        checks.number_in("model.label_smoothing", label_smoothing, 0.0, 1.0, open_high=True)
        self.net: nn.Module = get_model(
            net["name"], num_classes=num_classes, in_channels=in_channels, **net_kwargs
        )
        if init_from is not None:
            copy_weights_from(self.net, net["name"], init_from)
        self.optimizer_factory = optimizer
        # fail before any data loads, on the groups the run will build the optimizer from
        checks.optimizer_arguments("model.optimizer", optimizer, self.optimizer_parameters())
        self.scheduler_factory = scheduler
        self.aux_loss_weights = tuple(aux_loss_weights)

        top5 = min(5, num_classes) == 5
        self.train_metrics = accuracy_metrics(num_classes, top5=False, prefix="train/")
        self.val_metrics = accuracy_metrics(num_classes, top5=top5)
        self.test_metrics = accuracy_metrics(num_classes, top5=top5)
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        # Per-step work that is not the network is batched over windows of steps (see
        # StepWindow): one torchmetrics update costs ~0.1 ms, a per-pattern LeNet-5 step ~2 ms.
        self.window = StepWindow()
        self._compiled = self._compile_timed = False

    # Arguments older versions stored that this class no longer takes (from_hyperparameters).
    retired_hyperparameters = RETIRED_HYPERPARAMETERS

    @classmethod
    def from_hyperparameters(cls, hyperparameters: Mapping[str, Any]) -> ClassificationModule:
        """The module a checkpoint's ``hyper_parameters`` describe (untrained: load its
        ``state_dict`` next), whichever version of classicnets wrote it."""
        kept = {k: v for k, v in hyperparameters.items() if k not in RETIRED_HYPERPARAMETERS}
        return cls(**kept)

    def configure_model(self) -> None:
        """``model.compile=true``: compile the network in place, once (``nn.Module.compile``:
        the parameters and ``state_dict`` keys stay the eager network's, so checkpoints load into
        an uncompiled module)."""
        if self.hparams.compile and not self._compiled:
            backend = "inductor" if self.hparams.compile is True else str(self.hparams.compile)
            self.net.compile(backend=backend)
            self._compiled = True

    def forward(self, images: Tensor | list[list[Tensor]]) -> Tensor:
        """Class scores; ``(B, n_crops, C, H, W)`` input averages the softmax over the crops, and
        a whole-image protocol's groups of views (``data/protocols.py``) the softmax over each
        group's views, then over the groups."""
        if isinstance(images, list):
            groups = [torch.cat([self.net(v).softmax(dim=-1) for v in g]).mean(0) for g in images]
            return torch.stack(groups).mean(0, keepdim=True).clamp_min(1e-12).log()
        if images.ndim == 5:
            batch, crops = images.shape[:2]
            logits = self.net(images.flatten(0, 1))
            probs = logits.softmax(dim=-1).view(batch, crops, -1).mean(dim=1)
            return probs.clamp_min(1e-12).log()  # log-probabilities: valid logits for the loss
        return self.net(images)

    def compute_loss(
        self, outputs: Tensor | Sequence[Tensor], targets: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Main loss plus the weighted auxiliary losses; returns (loss, main logits)."""
        heads = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        main, aux = heads[0], heads[1:]
        if aux and len(aux) != len(self.aux_loss_weights):
            raise ValueError(
                f"the network returned {len(aux)} auxiliary outputs but model.aux_loss_weights "
                f"has {len(self.aux_loss_weights)} weights"
            )
        smoothing = self.hparams.label_smoothing
        loss = F.cross_entropy(main, targets, label_smoothing=smoothing)
        for weight, logits in zip(self.aux_loss_weights, aux, strict=True):
            loss = loss + weight * F.cross_entropy(logits, targets, label_smoothing=smoothing)
        return loss, main

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch
        return self.forward_loss(images, targets)

    def forward_loss(self, images: Tensor, targets: Tensor) -> Tensor:
        """The training loss of one optimizer step's batch, its predictions kept for the
        training metrics (in the step window)."""
        timed = self._compiled and not self._compile_timed
        start = time.perf_counter()
        loss, logits = self.compute_loss(self.net(images), targets)
        if timed:  # the forward of the first step is where compilation happens
            self._compile_timed = True
            seconds = time.perf_counter() - start
            log.info("model.compile: the first training step took %.1f s (compilation)", seconds)
            self.log("compile/first_step_s", seconds, on_step=True, on_epoch=False)
        self.window.add(self.current_epoch, self.global_step, loss, logits, targets)
        if len(self.window) >= self.hparams.check_every_n_steps:
            self._close_window(log_loss=True)
        return loss

    def _close_window(self, log_loss: bool = False) -> None:
        """Every rank stops at the same point when any rank's loss was not finite (one host
        sync and one all-reduce per window, not per step); else the window's predictions go
        into the training metrics. Called every ``check_every_n_steps`` steps, at the end of
        every epoch and before every checkpoint, so a checkpoint never holds a diverged net."""
        window = self.window
        bad = window.first_non_finite(self.trainer.strategy)
        if bad is not None:
            epoch, step = bad
            where = f"at epoch {epoch}, global step {step}" if step >= 0 else "on another rank"
            raise FloatingPointError(
                f"the loss is NaN or infinite {where}; the last good checkpoint is kept. Lower "
                "the learning rate or check the data"
            )
        if window.targets:
            preds, targets, losses, sizes = window.stacked()
            self.train_metrics.update(preds, targets)
            self.train_loss.update(losses, weight=sizes)
            if log_loss:  # the window's mean, for the progress bar (the logs get epoch means)
                mean = (losses * sizes).sum() / sizes.sum()
                self.log("train/loss", mean, prog_bar=True, logger=False, on_step=True)
        window.clear()

    def on_train_epoch_end(self) -> None:
        if self.window:  # the same on every rank: every rank runs the same number of steps
            self._close_window()
        # Logged once an epoch; after a mid-epoch resume it covers the batches since the resume.
        if self.train_loss.update_count:  # not an empty epoch
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True, prog_bar=True)
            self.log("train/loss_epoch", self.train_loss, on_step=False, on_epoch=True)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Weights that do not fit (resume, eval) are one line naming a tensor, not a traceback."""
        if strict:
            checks.state_dict_fits(self.state_dict(), state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.window:  # every rank saves together: the all-reduce is safe here
            self._close_window()

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, targets = batch
        if targets.numel() == 0:  # every file of this batch failed to decode (and was logged)
            return
        logits = self(images)
        loss = F.cross_entropy(logits, targets)
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        mean_loss: MeanMetric = getattr(self, f"{stage}_loss")
        metrics.update(logits, targets)
        mean_loss.update(loss, weight=targets.numel())
        # Metric objects: Lightning computes, syncs over ranks and resets them at epoch end.
        prefix = self._eval_prefix(stage)
        values = {f"{prefix}/{name}": m for name, m in metrics.items(keep_base=True)}
        values[f"{prefix}/loss"] = mean_loss
        self.log_dict(values, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def _eval_prefix(self, stage: str) -> str:
        """``test/<protocol>`` for the test metrics: the name says which protocol made them."""
        protocol = getattr(self.trainer.datamodule, f"{stage}_protocol", None)
        return f"test/{protocol}" if stage == "test" and protocol else stage

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> tuple[list[Optimizer], list[dict[str, Any]]]:
        """Always ``([optimizer], [scheduler configs])``, the list empty without a schedule."""
        optimizer, schedulers = build_optimization(
            self.optimizer_recipe(), self.optimizer_parameters(), self.run_size()
        )
        return [optimizer], schedulers

    def optimizer_recipe(self) -> OptimizerRecipe:
        """The recipe's optimizer, schedule and LR scaling (``model.*``)."""
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured: set model.optimizer in the config")
        hp = self.hparams
        return OptimizerRecipe(
            optimizer=self.optimizer_factory,
            scheduler=self.scheduler_factory,
            scheduler_config=dict(hp.scheduler_config or {}),
            reference_batch_size=hp.reference_batch_size,
            scale_lr=hp.scale_lr,
            warmup_epochs=hp.warmup_epochs,
        )

    def optimizer_parameters(self) -> list[Any]:
        """The parameters, in groups where some kinds are spared weight decay."""
        if self.hparams.no_weight_decay:
            return parameter_groups(self.net, self.hparams.no_weight_decay)
        return list(self.parameters())

    def run_size(self) -> RunSize:
        """This run's length, which the schedule depends on (Lightning counts the batches)."""
        trainer = self.trainer
        steps = int(trainer.estimated_stepping_batches)
        return RunSize(steps, int(trainer.max_epochs or 0), self.hparams.batch_size)
