"""LeNet-5's curvature schedule for the stochastic diagonal Levenberg-Marquardt optimizer
(``classicnets.optim.SDLM``). LeCun et al. 1998, section III.A: "before each iteration, the diagonal
Hessian approximation was reevaluated on 500 samples ... and was kept fixed during the entire
iteration"."""

from __future__ import annotations

import logging

import torch
from lightning import Callback, LightningModule, Trainer
from torch.utils.data import default_collate

from classicnets.optim import SDLM, diagonal_gauss_newton
from classicnets.run import checks

log = logging.getLogger(__name__)


class SDLMCurvature(Callback):
    """Before every pass, estimate h_kk on ``samples`` random training patterns (their mean
    second derivative) and hand it to the SDLM optimizer; logs the range of effective rates
    η / (μ + h_kk), the figure the paper quotes ("between approximately 7e-5 and 0.016").

    Rank 0's estimate is broadcast, so every DDP rank steps with the same rates."""

    def __init__(self, samples: int = 500) -> None:
        checks.positive_int("callbacks.sdlm_curvature.samples", samples)
        self.samples = samples

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        optimizers = [opt for opt in trainer.optimizers if isinstance(opt, SDLM)]
        if not optimizers:
            if trainer.current_epoch == 0:
                log.info("SDLMCurvature: the optimizer is not SDLM; no curvature to estimate")
            return
        images, targets = self._draw_patterns(trainer, pl_module)
        curvature = diagonal_gauss_newton(pl_module.net, images, targets)
        mean = [h / len(targets) for h in curvature.values()]
        mean = trainer.strategy.broadcast([h.cpu() for h in mean], src=0)
        estimate = {p: h.to(p.device) for p, h in zip(curvature, mean, strict=True)}
        for optimizer in optimizers:
            optimizer.set_curvature(estimate)
        # The effective rates of this pass, η / (μ + h_kk), as section III.A quotes them. Per
        # step on the batch's mean gradient; with batch 1, per pattern as in the paper.
        rates = torch.cat(
            [
                (group["lr"] / (group["mu"] + optimizer.state[p]["curvature"])).flatten()
                for optimizer in optimizers
                for group in optimizer.param_groups
                for p in group["params"]
                if "curvature" in optimizer.state[p]
            ]
        )
        # Every rank holds the same values (broadcast above): no sync needed.
        pl_module.log_dict(
            {"sdlm/rate_min": rates.min(), "sdlm/rate_max": rates.max()},
            on_step=False,
            on_epoch=True,
            rank_zero_only=True,
        )

    def _draw_patterns(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` training patterns, as the training step sees them (augmented, on device)."""
        dataset = trainer.train_dataloader.dataset
        count = min(self.samples, len(dataset))
        # A CPU stream of its own, from the run's seed and the epoch: training draws the same
        # shuffles and distortions with or without this callback, a resumed run redraws the same
        # patterns, and runs of different seeds draw different ones.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(
                (torch.initial_seed() * 1_000_003 + trainer.current_epoch) % 2**63
            )
            picks = torch.randperm(len(dataset))[:count]
            batch = default_collate([dataset[int(i)] for i in picks])
        # To the device, through the DataModule's on_after_batch_transfer (normalisation, ...),
        # then in the precision the network runs in.
        images, targets = trainer.strategy.batch_to_device(batch, pl_module.device)
        return trainer.precision_plugin.convert_input(images), targets
