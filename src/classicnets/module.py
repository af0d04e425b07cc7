"""One LightningModule for every architecture: the network comes from the registry by name."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from classicnets import checks
from classicnets.models import get_model
from classicnets.models.init_from import init_from as copy_weights_from

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


NO_DECAY_KINDS = ("bias", "norm", "depthwise")


def parameter_groups(net: nn.Module, no_weight_decay: Sequence[str]) -> list[dict[str, Any]]:
    """The network's parameters in two groups: the second, weight decay 0, holds the kinds named
    in ``no_weight_decay`` — ``bias``, ``norm`` (all BN/GN/LN parameters), ``depthwise`` (3×3
    depthwise filters: MobileNet section 3.2, "very little or no weight decay")."""
    unknown = set(no_weight_decay) - set(NO_DECAY_KINDS)
    if unknown:
        raise ValueError(f"model.no_weight_decay: unknown {sorted(unknown)}; use {NO_DECAY_KINDS}")
    decay: list[nn.Parameter] = []
    spared: list[nn.Parameter] = []
    for module in net.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
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


def scaled_learning_rate(base_lr: float, batch_size: int, reference_batch_size: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): the LR grows with the global batch."""
    return base_lr * batch_size / reference_batch_size


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
        reference_batch_size: the paper's global batch; None disables LR scaling.
        batch_size: this run's global batch.
        scale_lr: apply the linear scaling rule when ``batch_size != reference_batch_size``.
        warmup_epochs: gradual warm-up length when the scaled LR is larger than the paper's.
        init_from: a checkpoint or weights file the network starts from (``models/init_from.py``).
    """

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
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        # The factories are code, not hyperparameters; their config is stored by train.py. The
        # init_from file is only the start: a checkpoint of this run rebuilds without it.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "init_from"])
        net_kwargs = {k: v for k, v in net.items() if k != "name"}
        self.net: nn.Module = get_model(
            net["name"], num_classes=num_classes, in_channels=in_channels, **net_kwargs
        )
        if init_from is not None:
            copy_weights_from(self.net, net["name"], init_from)
        checks.optimizer_arguments("model.optimizer", optimizer)  # fail before any data loads
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.aux_loss_weights = tuple(aux_loss_weights)

        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict()
        for stage in ("train", "val", "test"):
            accuracy = {"acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
            if top5 == 5 and stage != "train":
                accuracy["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
            # The train collection logs itself (per epoch), so its keys carry the stage.
            prefix = "train/" if stage == "train" else None
            self.metrics[f"{stage}_metrics"] = MetricCollection(accuracy, prefix=prefix)
        self.mean_loss = nn.ModuleDict({f"{s}_loss": MeanMetric() for s in ("val", "test")})

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

    def _loss(self, outputs: Tensor | Sequence[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
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
        loss, logits = self._loss(self.net(images), targets)
        # Every rank stops at the same step, even where only one rank's loss went bad.
        finite = torch.isfinite(loss).item()
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {self.current_epoch}, global step "
                f"{self.global_step}; the last good checkpoint is kept. Lower the learning rate "
                "or check the data"
            )
        self.metrics["train_metrics"].update(logits.detach(), targets)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # Logged once an epoch rather than handed to self.log every step: the same epoch value
        # (synced over ranks by torchmetrics), without Lightning's per-step bookkeeping, which
        # costs a quarter of a LeNet-5 step when the paper updates per pattern. After a
        # mid-epoch resume it covers the batches since the resume.
        metrics = self.metrics["train_metrics"]
        if any(metric.update_count for metric in metrics.values()):  # not an empty epoch
            self.log_dict(metrics.compute(), prog_bar=True)
        metrics.reset()

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, targets = batch
        if targets.numel() == 0:  # every file of this batch failed to decode (and was logged)
            return
        logits = self(images)
        loss = F.cross_entropy(logits, targets)
        self.mean_loss[f"{stage}_loss"].update(loss, weight=targets.numel())
        self.metrics[f"{stage}_metrics"].update(logits, targets)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_eval(self, stage: str) -> None:
        """Log sample-weighted epoch metrics under a name that says which protocol made them."""
        prefix = stage
        protocol = getattr(self.trainer.datamodule, f"{stage}_protocol", None)
        if stage == "test" and protocol:
            prefix = f"test/{protocol}"
        values = {f"{prefix}/loss": self.mean_loss[f"{stage}_loss"].compute()}
        accuracy = self.metrics[f"{stage}_metrics"].compute()
        values.update({f"{prefix}/{name}": value for name, value in accuracy.items()})
        self.log_dict(values, prog_bar=stage == "val", sync_dist=False)
        self.mean_loss[f"{stage}_loss"].reset()
        self.metrics[f"{stage}_metrics"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured: set model.optimizer in the config")
        if self.hparams.no_weight_decay:
            params = parameter_groups(self.net, self.hparams.no_weight_decay)
        else:
            params = self.parameters()
        optimizer = self.optimizer_factory(params=params)
        warmup = self._apply_lr_scaling(optimizer)
        schedulers: list[dict[str, Any]] = []
        if self.scheduler_factory is not None:
            settings = dict(self.hparams.scheduler_config or {})
            if settings.get("monitor") is None:
                settings.pop("monitor", None)
            # A schedule whose length follows the run (LinearDecayLR) takes the run's step count.
            takes_length = "total_steps" in inspect.signature(self.scheduler_factory).parameters
            length = {"total_steps": int(self.trainer.estimated_stepping_batches)}
            scheduler = self.scheduler_factory(optimizer, **(length if takes_length else {}))
            schedulers.append({"scheduler": scheduler, **settings})
        if warmup:
            # Built after the main scheduler: both scale the LR multiplicatively, so they chain.
            steps = max(1, int(self.trainer.estimated_stepping_batches * warmup))
            schedulers.append(
                {"scheduler": LinearLR(optimizer, 1.0 / 1000, 1.0, steps), "interval": "step"}
            )
        if not schedulers:
            return optimizer
        if len(schedulers) == 1:
            return {"optimizer": optimizer, "lr_scheduler": schedulers[0]}
        return [optimizer], schedulers

    def _apply_lr_scaling(self, optimizer: Optimizer) -> float:
        """Scale the LR to this run's global batch; returns the warm-up as a fraction of the run."""
        hp = self.hparams
        if not hp.reference_batch_size or not hp.batch_size:
            return 0.0
        if hp.batch_size == hp.reference_batch_size:
            return 0.0
        if not hp.scale_lr:
            log.info(
                "global batch %d differs from the paper's %d; LR scaling is off (model.scale_lr)",
                hp.batch_size, hp.reference_batch_size,
            )  # fmt: skip
            return 0.0
        for group in optimizer.param_groups:
            base = group["lr"]
            group["lr"] = scaled_learning_rate(base, hp.batch_size, hp.reference_batch_size)
        ratio = hp.batch_size / hp.reference_batch_size
        log.info(
            "linear LR scaling: global batch %d vs the paper's %d, LR x%.4g -> %.6g%s",
            hp.batch_size, hp.reference_batch_size, ratio, optimizer.param_groups[0]["lr"],
            f", warm-up over {hp.warmup_epochs:g} epochs" if ratio > 1 and hp.warmup_epochs else "",
        )  # fmt: skip
        if ratio > 1 and hp.warmup_epochs and self.trainer.max_epochs:
            return min(1.0, hp.warmup_epochs / self.trainer.max_epochs)
        return 0.0
