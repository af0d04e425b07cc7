"""One LightningModule for every architecture: the network comes from the registry by name."""

from __future__ import annotations

import inspect
import logging
import math
import time
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

from classicnets import checks, compat
from classicnets.models import get_model, model_info
from classicnets.models.init_from import init_from as copy_weights_from
from classicnets.step_window import StepWindow

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


def accuracy_metrics(num_classes: int, top5: bool, prefix: str | None = None) -> MetricCollection:
    """Top-1 (and top-5) accuracy over all samples, the figure the papers report."""
    metrics = {"acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if top5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)


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
        compile: ``torch.compile`` the network (``model.compile=true``); a string names the
            backend (``aot_eager``: traced, no code generation, a quick check that it compiles).
        check_every_n_steps: how often the ranks agree that the loss is finite (one host sync);
            a non-finite loss stops the run within this many steps, before any checkpoint.
        updates_per_step: optimizer steps per training batch, each on the next
            ``1 / updates_per_step`` of it (the DataModule loads that many update batches at
            once): LeNet-5's per-pattern updates without Lightning's per-step cost per pattern.
            Epoch-wise schedules are stepped at epoch ends, step-wise ones after every update.
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
        compile: bool | str = False,
        check_every_n_steps: int = 100,
        updates_per_step: int = 1,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        checks.positive_int("model.updates_per_step", updates_per_step)
        checks.positive_int("model.check_every_n_steps", check_every_n_steps)
        self.updates_per_step = updates_per_step
        self.automatic_optimization = updates_per_step == 1
        # The factories are code, not hyperparameters; their config is stored by train.py. The
        # init_from file is only the start: a checkpoint of this run rebuilds without it.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "init_from"])
        net_kwargs = {k: v for k, v in net.items() if k != "name"}
        checks.builder_arguments(
            "model.net", net["name"], model_info(net["name"]).builder, net_kwargs
        )
        checks.number_in("model.label_smoothing", label_smoothing, 0.0, 1.0, open_high=True)
        self.net: nn.Module = get_model(
            net["name"], num_classes=num_classes, in_channels=in_channels, **net_kwargs
        )
        if init_from is not None:
            copy_weights_from(self.net, net["name"], init_from)
        checks.optimizer_arguments("model.optimizer", optimizer)  # fail before any data loads
        self.optimizer_factory = optimizer
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
        self._compile_timed = False

    def setup(self, stage: str) -> None:
        # Several updates per batch need one process: under DDP every update is a Lightning
        # step of its own (DDP all-reduces once per forward), and the DataModule loads so.
        if self.hparams.updates_per_step > 1 and self.trainer.world_size > 1:
            log.info("model.updates_per_step applies to one process; under DDP it is 1")
            self.updates_per_step = 1
            self.automatic_optimization = True
        # fp16 mixed precision scales the loss; the updates of a batch step without the scaler
        if self.updates_per_step > 1 and getattr(self.trainer.precision_plugin, "scaler", None):
            raise checks.ConfigValueError(
                "trainer.precision",
                self.trainer.precision,
                "model.updates_per_step > 1 steps without a loss scaler: use bf16-mixed or "
                "32-true, or model.updates_per_step=1",
            )

    def configure_model(self) -> None:
        """``model.compile=true``: compile the network (not the module), once. The compiled
        wrapper shares the eager network's parameters and is kept outside the module's children,
        so checkpoints keep the eager ``state_dict`` keys and load into an uncompiled module."""
        if self.hparams.compile and self._compiled is None:
            backend = "inductor" if self.hparams.compile is True else str(self.hparams.compile)
            object.__setattr__(self, "_compiled_net", torch.compile(self.net, backend=backend))

    @property
    def _compiled(self) -> Callable[[Tensor], Any] | None:
        return self.__dict__.get("_compiled_net")

    def _run_net(self, images: Tensor) -> Any:
        return self._compiled(images) if self._compiled is not None else self.net(images)

    def forward(self, images: Tensor | list[list[Tensor]]) -> Tensor:
        """Class scores; ``(B, n_crops, C, H, W)`` input averages the softmax over the crops, and
        a whole-image protocol's groups of views (``data/protocols.py``) the softmax over each
        group's views, then over the groups."""
        if isinstance(images, list):
            groups = [torch.cat([self.net(v).softmax(dim=-1) for v in g]).mean(0) for g in images]
            return torch.stack(groups).mean(0, keepdim=True).clamp_min(1e-12).log()
        if images.ndim == 5:
            batch, crops = images.shape[:2]
            logits = self._run_net(images.flatten(0, 1))
            probs = logits.softmax(dim=-1).view(batch, crops, -1).mean(dim=1)
            return probs.clamp_min(1e-12).log()  # log-probabilities: valid logits for the loss
        return self._run_net(images)

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
        if self.automatic_optimization:
            return self._forward_loss(images, targets)
        # updates_per_step > 1: one optimizer step per slice; Lightning's own per-step work
        # (hooks, progress, loop bookkeeping: ~1 ms, more than a per-pattern LeNet-5 update on
        # 2 cores) is paid once per batch of slices.
        optimizer = self.optimizers()
        hooks = compat.before_step_hooks(self.trainer, optimizer)
        per_update = [
            c.scheduler for c in self.trainer.lr_scheduler_configs if c.interval == "step"
        ]
        clip = self.trainer.gradient_clip_val
        # Slices of the update batch (one process: the global batch), the epoch's last shorter.
        size = self.hparams.batch_size or math.ceil(len(targets) / self.updates_per_step)
        for slice_images, slice_targets in zip(
            images.split(size), targets.split(size), strict=True
        ):
            loss = self._forward_loss(slice_images, slice_targets)
            optimizer.zero_grad(set_to_none=True)
            # Not manual_backward: its two callback rounds (on_before/after_backward) cost a
            # tenth of a LeNet-5 update. One process (see setup), no loss scaling (fp32, bf16).
            loss.backward()
            if clip:
                self.clip_gradients(optimizer, clip, self.trainer.gradient_clip_algorithm)
            compat.counted_step(optimizer, hooks)  # optimizer.step() without the no-op hooks
            for scheduler in per_update:
                scheduler.step()
        return loss.detach()

    def _forward_loss(self, images: Tensor, targets: Tensor) -> Tensor:
        timed = self._compiled is not None and not self._compile_timed
        start = time.perf_counter()
        loss, logits = self._loss(self._run_net(images), targets)
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
        if not self.automatic_optimization:  # what Lightning does for epoch-wise schedules
            for config in self.trainer.lr_scheduler_configs:
                if config.interval == "epoch" and (self.current_epoch + 1) % config.frequency == 0:
                    config.scheduler.step()

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
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured: set model.optimizer in the config")
        if self.hparams.no_weight_decay:
            params = parameter_groups(self.net, self.hparams.no_weight_decay)
        else:
            params = list(self.parameters())
        lr, warmup_factor = self._scaled_lr()
        optimizer = self.optimizer_factory(params=params, **({"lr": lr} if lr else {}))
        schedulers: list[dict[str, Any]] = []
        if self.scheduler_factory is not None:
            settings = dict(self.hparams.scheduler_config or {})
            if settings.get("monitor") is None:
                settings.pop("monitor", None)
            elif not self.automatic_optimization:
                raise ValueError("a monitored scheduler needs model.updates_per_step=1")
            kwargs = {}
            if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
                kwargs["total_steps"] = self._estimated_updates()
            scheduler = self.scheduler_factory(optimizer, **kwargs)
            schedulers.append({"scheduler": scheduler, **settings})
        if warmup_factor:
            # Goyal et al. 2017, section 2.2: from the paper's rate η (factor 1/k of the scaled
            # kη), "increment it by a constant amount at each iteration" for warmup_epochs.
            # Built after the main scheduler: both scale the LR multiplicatively, so they chain.
            fraction = min(1.0, self.hparams.warmup_epochs / self.trainer.max_epochs)
            steps = max(1, int(self._estimated_updates() * fraction))
            warmup = LinearLR(optimizer, warmup_factor, 1.0, steps)
            schedulers.append({"scheduler": warmup, "interval": "step"})
        return [optimizer], schedulers

    def _estimated_updates(self) -> int:
        """Optimizer steps in the whole run (Lightning counts batches)."""
        return int(self.trainer.estimated_stepping_batches) * self.updates_per_step

    def _scaled_lr(self) -> tuple[float | None, float]:
        """(this run's LR, or None to keep the optimizer's; the warm-up's start factor 1/k, or 0
        for no warm-up), from the linear scaling rule (Goyal et al. 2017)."""
        hp = self.hparams
        if not hp.reference_batch_size or not hp.batch_size:
            return None, 0.0
        if hp.batch_size == hp.reference_batch_size:
            return None, 0.0
        if not hp.scale_lr:
            log.info(
                "global batch %d differs from the paper's %d; LR scaling is off (model.scale_lr)",
                hp.batch_size, hp.reference_batch_size,
            )  # fmt: skip
            return None, 0.0
        base = base_learning_rate(self.optimizer_factory)
        ratio = hp.batch_size / hp.reference_batch_size
        lr = scaled_learning_rate(base, hp.batch_size, hp.reference_batch_size)
        warmup = ratio > 1 and hp.warmup_epochs and self.trainer.max_epochs
        log.info(
            "linear LR scaling: global batch %d vs the paper's %d, LR x%.4g -> %.6g%s",
            hp.batch_size, hp.reference_batch_size, ratio, lr,
            f", warm-up from x{1 / ratio:.4g} over {hp.warmup_epochs:g} epochs" if warmup else "",
        )  # fmt: skip
        return lr, 1.0 / ratio if warmup else 0.0


def base_learning_rate(factory: OptimizerFactory) -> float:
    """The LR an optimizer factory (a partial) builds with: its ``lr`` keyword or the default."""
    keywords = getattr(factory, "keywords", {}) or {}
    if "lr" in keywords:
        return float(keywords["lr"])
    default = inspect.signature(factory).parameters.get("lr")
    if default is None or not isinstance(default.default, int | float):
        raise ValueError("LR scaling needs the optimizer's lr: set model.optimizer.lr")
    return float(default.default)
