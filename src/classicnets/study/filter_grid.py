"""Watch the first layer's filters form: their grid (AlexNet Figure 3) every N epochs.

    python src/train.py model=alexnet data.root=DIR \
        +callbacks.filters._target_=classicnets.study.FilterGrid \
        +callbacks.filters.every_n_epochs=5
"""

from __future__ import annotations

from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from classicnets.run import checks
from classicnets.study.filters import KernelFigure


class FilterGrid(Callback):
    """Log the kernel grid of ``layer`` (default: the first convolution) and each group's colour
    specificity every ``every_n_epochs``: to W&B when it is a logger, else as
    ``<run dir>/filters/epoch<N>.png``."""

    def __init__(self, every_n_epochs: int = 1, layer: str | None = None) -> None:
        checks.positive_int("callbacks.filters.every_n_epochs", every_n_epochs)
        self.every_n_epochs, self.layer = every_n_epochs, layer

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs:
            return
        figure = KernelFigure.of(getattr(pl_module, "net", pl_module), self.layer)
        scores = enumerate(figure.specificity, start=1)
        pl_module.log_dict(
            {f"filters/colour_specificity_group{i}": s for i, s in scores}, rank_zero_only=True
        )
        wandb = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if wandb:
            wandb[0].log_image(f"filters/{figure.name}", [figure.grid], step=trainer.global_step)
            return
        folder = Path(trainer.default_root_dir) / "filters"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(figure.grid).save(folder / f"epoch{epoch:03d}.png")
