"""The learning rate of a recipe at every epoch of the run its overrides describe, printed and
drawn, before any GPU time is spent on it.

    python scripts/lr_schedule.py model=resnet50                      # ÷10 at epochs 30 and 60
    python scripts/lr_schedule.py model=resnet50 data.batch_size=1024  # ×4, 5-epoch warm-up
    python scripts/lr_schedule.py model=googlenet                     # ×0.96 every 8 epochs
    python scripts/lr_schedule.py model=alexnet                       # the plateau rule
    python scripts/lr_schedule.py model=alexnet data.root=DIR png=alexnet.png

The optimizer and schedulers are the ones training builds (``build_optimization`` in
``classicnets/optim/build.py``, linear scaling and warm-up included, from the recipe and the run's
size), stepped the way Lightning steps them. Epochs are counted
from 0, as Lightning logs them; each line gives the LR of the epoch's first step, and of its last
where the LR moves within the epoch. An epoch is the train split of ``data.root`` when it is there,
else ILSVRC-2012's 1,281,167 images; the output says which.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import HydraException
from lightning import LightningModule
from omegaconf import DictConfig

from classicnets.diagnostics import schedule as sched
from classicnets.diagnostics.recipe import (
    console_logging,
    one_line,
    recipe_name,
)
from classicnets.optim.build import scaled_learning_rate
from classicnets.run.errors import exit_on_user_error, overrides_only
from classicnets.run.setup import compose_config


def describe(
    cfg: DictConfig, module: LightningModule, epoch: sched.EpochSize, run: sched.PlannedRun
) -> list[str]:
    """The header: optimizer and LR, batch and scaling, the epoch's size and the run's length."""
    hp = module.hparams
    optimizer = cfg.model.optimizer
    lines = [f"optimizer {optimizer._target_.rsplit('.', 1)[-1]}, lr {optimizer.lr:g}"]
    reference, batch = hp.get("reference_batch_size"), hp.get("batch_size")
    if reference and batch and reference != batch:
        if hp.get("scale_lr", True):
            lr = scaled_learning_rate(optimizer.lr, batch, reference)
            warmup = hp.get("warmup_epochs") if batch > reference else 0
            lines.append(
                f"batch {batch} vs the paper's {reference}: lr ×{batch / reference:g} = {lr:g} "
                "(linear scaling rule)"
                + (f", warm-up over {warmup:g} epochs from lr {optimizer.lr:g}" if warmup else "")
            )
        else:
            lines.append(f"batch {batch} vs the paper's {reference}: LR scaling off")
    else:
        lines.append(f"batch {batch}, the paper's")
    lines.append(f"one epoch: {epoch.source}")
    steps = f"{run.steps_per_epoch:,} steps"
    if run.accumulate_grad_batches > 1:
        steps += f" (accumulating {run.accumulate_grad_batches} batches)"
    updates = run.size.updates_per_step  # optimizer updates per Lightning step
    total = f"{run.size.steps:,} steps"
    if updates > 1:
        steps += f" of {updates} updates each"
        total = f"{run.size.updates:,} updates"
    lines.append(f"{steps} an epoch, {run.max_epochs} epochs, {total}")
    return lines


def report(schedule: sched.Schedule) -> list[str]:
    """``epoch N  lr X`` lines, then the plateau rule."""
    lines = [f"schedulers: {', '.join(schedule.schedulers) or 'none (constant LR)'}"]
    if schedule.plateau is not None:
        lines.append("the epoch lines show the LR until the plateau rule's first reduction")
    if schedule.groups_differ:
        lines.append("parameter groups hold different LRs: the lines show group 0's")
    for epoch, (first, last) in enumerate(zip(schedule.first, schedule.last, strict=True)):
        moved = f"  (last step {last:.6g})" if not _same(first, last) else ""
        lines.append(f"epoch {epoch}  lr {first:.6g}{moved}")
    if schedule.plateau is not None:
        lines.append(f"plateau: {sched.plateau_rule(schedule.plateau, schedule.plateau_monitor)}")
    return lines


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def draw(schedule: sched.Schedule, title: str, path: Path) -> None:
    """The LR against epochs on a log scale; a plateau schedule adds its reduced levels."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    epochs, lrs = zip(*schedule.curve, strict=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.step(epochs, lrs, where="post", label="learning rate")
    if schedule.plateau is not None:
        cap = sched.plateau_cap(schedule.plateau) or 3  # uncapped: AlexNet and VGG reduced 3 times
        for k in range(1, cap + 1):
            level = lrs[-1] * schedule.plateau.factor**k
            ax.axhline(level, ls="--", lw=0.8, color="grey")
            ax.annotate(f"after {k} plateau reduction{'s' * (k > 1)}", (0, level), fontsize=8)
    ax.set(xlabel="epoch", ylabel="learning rate", yscale="log")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@exit_on_user_error
def run(overrides: Sequence[str], png: Path | None = None) -> list[str]:
    """Compose the recipe, trace its schedule, draw it (to ``png``, else the config's ``png``);
    returns the printed lines."""
    name = recipe_name(overrides)
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config("lr_schedule", overrides, Path(output_dir))
        png = png or (Path(cfg.png) if cfg.png else None)
        epoch, datamodule = sched.count_epoch(cfg)
        planned = sched.planned_run(cfg, epoch)
        module = sched.build_module(cfg, datamodule)
        header = describe(cfg, module, epoch, planned)
        schedule = sched.trace_schedule(module, planned)
    lines = [f"recipe {name}", *header, *report(schedule)]
    png = png or Path("logs") / "lr_schedule" / f"{name}.png"
    draw(schedule, f"{name}\n{header[0]}; {header[1]}", png)
    return [*lines, f"drawn to {png}"]


def main(argv: Sequence[str] | None = None) -> int:
    overrides = overrides_only(argv, "lr_schedule", "model=alexnet png=alexnet.png", __doc__)
    console_logging()
    try:
        lines = run(overrides)
    except HydraException as err:  # an unknown model=NAME, a misspelt key
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
