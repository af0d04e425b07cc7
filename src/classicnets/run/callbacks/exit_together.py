"""DDP: a failing rank 0 ends its own way, with its error logged and its W&B run closed."""

from __future__ import annotations

from lightning import Callback, LightningModule, Trainer

from classicnets.run.launch import stop_child_watch


class ExitTogether(Callback):
    """When training fails in rank 0, let rank 0 finish its own exit (see :func:`stop_child_watch`);
    children that wait in a collective end when :func:`end_job` closes the process group."""

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if trainer.is_global_zero:
            stop_child_watch()
