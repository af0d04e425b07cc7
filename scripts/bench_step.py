"""Per-step overhead of our Trainer: a run's Trainer (its callbacks, logger and progress bar)
against a plain PyTorch loop over the same network, optimizer and batches, in one process.

    python scripts/bench_step.py                                   # lenet5, per pattern (SDLM)
    python scripts/bench_step.py model=lenet5_modern data.batch_size=32
    python scripts/bench_step.py model=resnet18 data=synthetic --steps 20   # any recipe

Both loops draw the same in-memory batches (the recipe's training patterns, drawn once) through
the same DataLoader, so the difference is what the Trainer adds per step: hooks, syncs, logging,
the progress bar. Time is this process's CPU time (all its threads), so other processes' load
on a shared machine does not enter. After an untimed warm-up of both, the two alternate in
rounds (plain, Trainer, plain, ...); each round keeps the median over chunks of
``model.updates_per_step`` updates (the Trainer's steps), and the ratio printed is that of the
medians over rounds. Arguments after the flags are Hydra overrides of conf/train.yaml.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader, Subset, TensorDataset

from classicnets.optim import SDLM, diagonal_gauss_newton
from classicnets.run.errors import ArgumentParser
from classicnets.run.loggers import finish_loggers, instantiate_loggers
from classicnets.run.setup import compose_config, instantiate_callbacks, instantiate_trainer
from classicnets.training.callbacks.onednn import DisableOneDNN

# The bench measures the loop, not the logger's start-up or network: CSV unless told otherwise.
DEFAULT_OVERRIDES = ["logger=csv", "trainer.accelerator=cpu", "ckpt_path=null"]


def compose_run(overrides: list[str], run_dir: Path) -> DictConfig:
    """conf/train.yaml with ``overrides``, as ``python src/train.py overrides`` composes it."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    defaults = [o for o in DEFAULT_OVERRIDES if o.split("=", 1)[0] not in keys]
    return compose_config("train", defaults + overrides, run_dir)


def draw_patterns(cfg: DictConfig, count: int) -> TensorDataset:
    """``count`` training patterns of the recipe's data (augmented as training sees them)."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    images, targets = [], []
    for batch_images, batch_targets in loader:
        images.append(batch_images)
        targets.append(batch_targets)
        if sum(len(t) for t in targets) >= count:
            break
    dataset = TensorDataset(torch.cat(images)[:count], torch.cat(targets)[:count])
    # Normalisation etc., once, in memory (Lightning's default transfer hook returns the batch).
    dataset.tensors = datamodule.on_after_batch_transfer(dataset.tensors, 0)
    return dataset


def build_module(cfg: DictConfig, datamodule_info: TensorDataset, seed: int) -> LightningModule:
    torch.manual_seed(seed)
    images = datamodule_info.tensors[0]
    num_classes = int(hydra.utils.instantiate(cfg.data).num_classes)
    return hydra.utils.instantiate(
        cfg.model, num_classes=num_classes, in_channels=images.shape[1], _convert_="all"
    )


def set_sdlm_curvature(optimizer: torch.optim.Optimizer, net: torch.nn.Module, data: TensorDataset):
    """What SDLMCurvature does before a pass, for the plain loop (once, outside the timing)."""
    if isinstance(optimizer, SDLM):
        images, targets = data.tensors[0][:500], data.tensors[1][:500]
        curvature = diagonal_gauss_newton(net, images, targets)
        optimizer.set_curvature({p: h / len(targets) for p, h in curvature.items()})


def plain_loop(module: LightningModule, loader: DataLoader, data: TensorDataset) -> list[float]:
    """The textbook loop over the module's own network, optimizer and loss; per-step seconds."""
    net = module.net
    net.train()
    factory = module.optimizer_factory
    optimizer = factory(params=net.parameters())
    set_sdlm_curvature(optimizer, net, data)
    times = []
    start = time.process_time()
    for images, targets in loader:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = module.compute_loss(net(images), targets)
        loss.backward()
        optimizer.step()
        now = time.process_time()
        times.append(now - start)
        start = now
    return times


class StepTimer(Callback):
    """CPU time from one training batch's end to the next's: everything the Trainer does."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        now = time.process_time()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def trainer_loop(cfg: DictConfig, module: LightningModule, loader: DataLoader) -> list[float]:
    """A run's Trainer, callbacks and logger over the same batches, one epoch, no validation."""
    timer = StepTimer()
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"), Path(cfg.paths.output_dir))
    trainer_cfg = cfg.trainer.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.update(
            max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0, limit_train_batches=None
        )
    trainer: Trainer = instantiate_trainer(
        trainer_cfg, callbacks=[*callbacks, timer], logger=loggers or False
    )
    trainer.fit(module, train_dataloaders=loader)
    finish_loggers(loggers)
    return timer.times


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="plain/Trainer rounds, alternated")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args, overrides = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_run(overrides, Path(tmp))
        batch_size = int(cfg.data.batch_size)
        # model.updates_per_step: the Trainer gets that many update batches per training batch
        updates = int(cfg.model.get("updates_per_step", 1))
        data = draw_patterns(cfg, args.steps * batch_size)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        grouped = DataLoader(data, batch_size=batch_size * updates, shuffle=False)
        # The plain loop runs under the backend settings the run's callbacks choose.
        if any(isinstance(c, DisableOneDNN) for c in instantiate_callbacks(cfg.callbacks)):
            torch.backends.mkldnn.enabled = False
        # An untimed first round on a quarter of the batches: the first thousands of updates of
        # a fresh process run up to 1.7x slower (allocator, caches), which the plain loop, run
        # first, would otherwise pay alone.
        warm = Subset(data, range(max(batch_size * updates, len(data) // 4)))
        plain_loop(build_module(cfg, data, 999), DataLoader(warm, batch_size=batch_size), data)
        trainer_loop(cfg, build_module(cfg, data, 999), DataLoader(warm, batch_size * updates))
        plain, ours = [], []
        for round_ in range(args.rounds):
            seed = 1000 + round_
            times = plain_loop(build_module(cfg, data, seed), loader, data)
            chunks = [
                sum(times[i : i + updates]) for i in range(0, len(times) - updates + 1, updates)
            ]
            plain.append(statistics.median(chunks) / updates)
            steps = trainer_loop(cfg, build_module(cfg, data, seed), grouped)
            ours.append(statistics.median(steps) / updates)
    p, t = statistics.median(plain), statistics.median(ours)
    name = cfg.model.net.name
    print(f"model={name} batch={batch_size} updates/step={updates} steps={args.steps}")
    print(f"plain loop  {p * 1e3:8.3f} ms/update")
    print(f"our Trainer {t * 1e3:8.3f} ms/update")
    print(f"overhead    {100 * (t / p - 1):+7.1f} %")


if __name__ == "__main__":
    main(sys.argv[1:])
