"""Training throughput of any recipe: images/s, forward/backward time and data-wait time apart,
peak memory; one CSV row per configuration.

    python scripts/bench_train.py model=resnet50 data.batch_size=256 precision=bf16 \\
        channels_last=true compile=true                        # synthetic data, on the GPU
    python scripts/bench_train.py model=alexnet data=real data.root=DIR data.num_workers=16
    python scripts/bench_train.py --all data.batch_size=8 --steps 5     # every registered model
    python scripts/bench_train.py model=lenet5_modern data.batch_size=32 --csv out.csv

``data=synthetic`` (default) feeds one random batch already on the device: the network's ceiling.
``data=real`` runs the recipe's own DataModule (decode, augment, transfer, on-device normalise):
data wait is then the time the step stood waiting for its batch. ``precision`` is ``fp32``,
``bf16`` or ``fp16`` (autocast; no loss scaling, this measures speed), ``channels_last`` moves
network and batches to NHWC, ``compile`` runs the network under ``torch.compile`` (its first
step, the compilation, is reported apart and left out of the figures). The step is the recipe's:
its network, loss (auxiliary heads included) and optimizer. Every timed step ends with a device
sync, so the split is exact; the figures are medians over ``--steps`` after ``--warmup``.
Other ``key=value`` arguments are Hydra overrides of conf/train.yaml.
"""

from __future__ import annotations

import contextlib
import csv
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from bench_step import compose_run
from classicnets.models import list_models, model_info
from classicnets.run.errors import ArgumentParser

OPTIONS = {"precision": "fp32", "channels_last": "false", "compile": "false", "data": "synthetic"}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COLUMNS = [
    "model", "device", "batch", "precision", "channels_last", "compile", "data", "images_per_s",
    "step_ms", "fwd_bwd_ms", "data_wait_ms", "data_wait_share", "peak_mem_mib", "first_step_s",
]  # fmt: skip


def synthetic_batches(
    cfg: DictConfig, batch: int, channels: int, num_classes: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One random batch at the paper's input size, on the device, handed out again and again."""
    size = model_info(cfg.model.net.name).input_size
    images = torch.randn(batch, channels, size, size, device=device)
    targets = torch.randint(0, num_classes, (batch,), device=device)
    while True:
        yield images, targets


def real_batches(datamodule: Any, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """The recipe's training loader, moved (and with data.decode=gpu decoded) and normalised as
    the Trainer does, epoch by epoch."""
    while True:
        for batch in datamodule.train_dataloader():
            batch = datamodule.transfer_batch_to_device(batch, device, 0)
            yield datamodule.on_after_batch_transfer(batch, 0)


def bench(cfg: DictConfig, options: dict[str, str], steps: int, warmup: int) -> dict[str, Any]:
    """Train ``warmup + steps`` steps of the recipe; the CSV row of the timed ones."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    digits = model_info(cfg.model.net.name).input_size == 32  # LeNet-5: 1-channel digits
    datamodule = hydra.utils.instantiate(cfg.data) if options["data"] == "real" else None
    if datamodule is not None:
        datamodule.setup("fit")
        num_classes, in_channels = int(datamodule.num_classes), int(datamodule.in_channels)
    else:
        num_classes, in_channels = (10, 1) if digits else (1000, 3)
    module = hydra.utils.instantiate(
        cfg.model, num_classes=num_classes, in_channels=in_channels, _convert_="all"
    ).to(device)
    channels_last = options["channels_last"] == "true"
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    net = torch.compile(module.net) if options["compile"] == "true" else module.net
    optimizer = module.optimizer_factory(params=module.parameters())
    if hasattr(optimizer, "set_curvature"):  # SDLM: a unit curvature, as good as any for speed
        optimizer.set_curvature({p: torch.ones_like(p) for p in module.parameters()})
    batch = int(cfg.data.batch_size)
    if datamodule is not None:
        batches = real_batches(datamodule, device)
    else:
        batches = synthetic_batches(cfg, batch, in_channels, num_classes, device)
    dtype = DTYPES[options["precision"]]
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    module.train()
    waits, computes, first_step = [], [], 0.0
    for step in range(warmup + steps):
        start = time.perf_counter()
        images, targets = next(batches)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sync()
        fetched = time.perf_counter()
        with autocast:
            loss, _ = module.compute_loss(net(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        done = time.perf_counter()
        if step == 0:
            first_step = done - fetched
        if step >= warmup:
            waits.append(fetched - start)
            computes.append(done - fetched)
    wait, compute = statistics.median(waits), statistics.median(computes)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # the process's peak resident memory (Linux reports KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": cfg.model.net.name,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "batch": len(targets),
        **options,
        "images_per_s": round(len(targets) / (wait + compute), 1),
        "step_ms": round(1e3 * (wait + compute), 3),
        "fwd_bwd_ms": round(1e3 * compute, 3),
        "data_wait_ms": round(1e3 * wait, 3),
        "data_wait_share": round(wait / (wait + compute), 3),
        "peak_mem_mib": round(peak, 1),
        "first_step_s": round(first_step, 3),
    }


def recipe_names() -> list[str]:
    """Registered models that have a recipe in conf/model/."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "model"
    return [name for name in list_models() if (conf / f"{name}.yaml").is_file()]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--all", action="store_true", help="every registered model with a recipe")
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV file")
    args, rest = parser.parse_known_args(argv)
    options = dict(OPTIONS)
    overrides = []
    for arg in rest:
        key, _, value = arg.partition("=")
        if key in OPTIONS and not (key == "data" and value not in ("synthetic", "real")):
            options[key] = value.lower()
        else:
            overrides.append(arg)
    if options["precision"] not in DTYPES:
        parser.error(f"precision={options['precision']}: choose one of {sorted(DTYPES)}")
    models = [f"model={name}" for name in recipe_names()] if args.all else [None]
    rows = []
    writer = csv.DictWriter(sys.stdout, COLUMNS)
    writer.writeheader()
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose_run([model, *overrides] if model else overrides, Path(tmp))
            row = bench(cfg, options, args.steps, args.warmup)
        writer.writerow(row)
        sys.stdout.flush()
        rows.append(row)
    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a", newline="") as file:
            out = csv.DictWriter(file, COLUMNS)
            if new:
                out.writeheader()
            out.writerows(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
