"""AlexNet Figure 4 (left): validation images, their top-5 classes, and the training images
nearest to them in the last hidden layer's feature space.

    python scripts/neighbours.py CKPT --root DIR                      # 5 queries, 6 neighbours
    python scripts/neighbours.py CKPT --root DIR --queries 8 --k 6 --layer fc7 --out fig4.png
    python scripts/neighbours.py --benchmark 100000                   # search cost per 1M images

The training features are extracted once into the run directory (``logs/neighbours/runs/<key>``,
one per checkpoint, data root and layer; a rerun reuses them) as ``features_train.npy``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning import LightningDataModule
from PIL import Image

from classicnets.data.mnist import BACKGROUND, FOREGROUND, MNISTDataModule
from classicnets.errors import USER_ERRORS, ArgumentParser, non_negative, positive
from classicnets.neighbours import (
    CHUNK,
    FeatureHook,
    extract_features,
    input_batches,
    nearest,
    split_items,
)
from classicnets.restore import (
    checkpoint_data_config,
    class_names,
    log_image_to_wandb,
    restore_datamodule,
    restore_model,
)
from classicnets.run.checkpoints import load_checkpoint

THUMB = 96  # pixels per picture in the figure


def run_dir_for(ckpt: str, root: str | None, layer: str | None) -> Path:
    """One run directory per (checkpoint file, data root, layer): its features are reused."""
    stat = os.stat(ckpt)
    key = f"{Path(ckpt).resolve()}|{stat.st_mtime_ns}|{root}|{layer}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    base = Path(os.environ.get("CLASSICNETS_ROOT", "."))
    return base / "logs" / "neighbours" / "runs" / f"{Path(ckpt).stem}-{digest}"


def thumbnail(datamodule: LightningDataModule, split: str, item: str, row: int) -> np.ndarray:
    """The picture of one item: the file's centre square, or the digit."""
    if isinstance(datamodule, MNISTDataModule):
        digit = datamodule.splits[split].tensors[0][row, 0]
        grey = ((digit - BACKGROUND) / (FOREGROUND - BACKGROUND)).clamp(0, 1)
        return np.repeat((255 * (1 - grey)).byte().numpy()[..., None], 3, axis=-1)
    with Image.open(item) as image:
        image = image.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        return np.asarray(image.crop((left, top, left + side, top + side)).resize((THUMB, THUMB)))


def draw(figure_rows: list[dict], k: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(figure_rows), k + 2, figsize=(1.3 * (k + 3), 1.4 * len(figure_rows)), squeeze=False,
        gridspec_kw={"width_ratios": [1, 1.8] + [1] * k},
    )  # fmt: skip
    for axs, row in zip(axes, figure_rows, strict=True):
        axs[0].imshow(row["query"])
        axs[0].set_title("query", fontsize=7)
        names, probs = row["top5"]
        axs[1].barh(range(len(probs))[::-1], probs, color="tab:red")
        axs[1].set_xlim(0, 1)
        axs[1].set_yticks(range(len(probs))[::-1], [n[:18] for n in names], fontsize=6)
        axs[1].tick_params(axis="x", labelsize=5)
        for ax, (picture, distance) in zip(axs[2:], row["neighbours"], strict=True):
            ax.imshow(picture)
            ax.set_title(f"{distance:.1f}", fontsize=7)
        for ax in (axs[0], *axs[2:]):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def benchmark(n: int, dim: int = 4096, queries: int = 5) -> None:
    """Search cost on synthetic features, scaled to a million bank images."""
    bank = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    query = torch.from_numpy(bank[:queries].copy())
    start = time.perf_counter()
    distances, indices = nearest(query, bank, k=6)
    seconds = time.perf_counter() - start
    assert (indices[:, 0] == torch.arange(queries)).all() and distances[:, 0].max() == 0
    per_million = seconds * 1e6 / n
    print(
        f"{queries} queries against {n:,} × {dim} float32 features: {seconds:.2f} s, "
        f"{per_million:.1f} s per million bank images ({dim * 4 * 1e6 / 2**30:.1f} GiB of "
        f"features per million, read in chunks of {CHUNK:,} rows = "
        f"{CHUNK * dim * 4 / 2**20:.0f} MiB, plus {CHUNK * queries * 4 / 2**20:.1f} MiB of "
        "distances)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", nargs="?", help="a checkpoint written by src/train.py")
    parser.add_argument("--root", help="the data root (ImageFolder: train/ and val/)")
    parser.add_argument("--queries", type=positive, default=5, help="validation images shown")
    parser.add_argument("--k", type=positive, default=6, help="neighbours per query (Figure 4: 6)")
    parser.add_argument("--layer", help="feature layer (default: the last hidden, e.g. fc7)")
    parser.add_argument("--out", type=Path, help="the PNG (default: in the run directory)")
    parser.add_argument("--wandb", action="store_true", help="also log the figure to W&B")
    parser.add_argument("--batch-size", type=positive, default=64)
    parser.add_argument("--workers", type=non_negative, default=0, help="data loader processes")
    parser.add_argument("--benchmark", type=int, metavar="N", help="time a search over N rows")
    args = parser.parse_args(argv)
    if args.benchmark:
        benchmark(args.benchmark)
        return 0
    if args.ckpt is None:
        parser.error("pass a checkpoint (or --benchmark N)")
    try:
        return study(args)
    except (*USER_ERRORS, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def study(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.ckpt)
    changes = {"root": args.root, "num_workers": args.workers} if args.root else {}
    datamodule = restore_datamodule(checkpoint_data_config(checkpoint, **changes), checkpoint)
    model = restore_model(checkpoint)
    del checkpoint
    run_dir = run_dir_for(args.ckpt, args.root, args.layer)
    run_dir.mkdir(parents=True, exist_ok=True)

    train_items = split_items(datamodule, "train")
    cache, listing = run_dir / "features_train.npy", run_dir / "items_train.txt"
    if cache.is_file() and listing.is_file() and listing.read_text().split("\n") == train_items:
        bank = np.load(cache, mmap_mode="r")
        print(f"reusing the training features in {cache}")
    else:
        start = time.perf_counter()
        bank = extract_features(model.net, datamodule, "train", cache, layer=args.layer,
                                batch_size=args.batch_size, workers=args.workers)  # fmt: skip
        listing.write_text("\n".join(train_items))
        print(f"extracted {bank.shape[0]:,} × {bank.shape[1]} training features in "
              f"{time.perf_counter() - start:.1f} s into {cache}")  # fmt: skip

    val_items = split_items(datamodule, "val")
    picks = np.unique(np.linspace(0, len(val_items) - 1, args.queries).round().astype(int))
    names = class_names(datamodule, model.hparams.num_classes)
    figure_rows = []
    with FeatureHook(model.net, args.layer) as hook:
        for images, rows in input_batches(datamodule, "val", len(picks), 0, only=picks.tolist()):
            features, probs = hook.features(images)
            distances, indices = nearest(features, bank, args.k)
            for row, p, ds, ids in zip(rows.tolist(), probs, distances, indices, strict=True):
                top = p.topk(min(5, len(p)))
                figure_rows.append({
                    "query": thumbnail(datamodule, "val", val_items[row], row),
                    "top5": ([names[i] for i in top.indices], top.values.tolist()),
                    "neighbours": [
                        (thumbnail(datamodule, "train", train_items[i], i), float(d))
                        for d, i in zip(ds, ids.tolist(), strict=True)
                    ],
                })  # fmt: skip
                nearest_items = ", ".join(Path(train_items[i]).name for i in ids[:3].tolist())
                print(f"{val_items[row]}: {names[top.indices[0]]} ({top.values[0]:.2f}); "
                      f"nearest {nearest_items}, ...")  # fmt: skip
    out = args.out or run_dir / "neighbours.png"
    draw(figure_rows, args.k, out)
    print(f"figure written to {out}")
    if args.wandb:
        log_image_to_wandb(out, "neighbours", run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
