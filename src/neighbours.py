"""AlexNet Figure 4 (left): validation images, their top-5 classes, and the training images
nearest to them in the last hidden layer's feature space.

python src/neighbours.py ckpt_path=CKPT                              # 5 queries, 6 neighbours
python src/neighbours.py ckpt_path=CKPT data.root=DIR queries=8 layer=fc7 logger=wandb

Draws ``<run dir>/neighbours.png``. The training features are extracted once into
``logs/neighbours/features/<checkpoint>-<key>/`` (one folder per checkpoint file, data config and
layer) and reused by later runs; ``python scripts/bench_neighbours.py`` times the search.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from classicnets.data.base import ClassificationDataModule
from classicnets.run import checkpoints, checks, setup
from classicnets.run.errors import hydra_main
from classicnets.study import rebuild
from classicnets.study.evaluation import eval_data_config
from classicnets.study.neighbours import (
    FeatureHook,
    FigureRow,
    cached_features,
    draw,
    feature_cache,
    input_batches,
    nearest,
)


@hydra_main(config_path="../conf", config_name="neighbours")
def main(cfg: DictConfig) -> Path:
    """Draw Figure 4 for ``cfg.queries`` validation images of ``cfg.ckpt_path``; returns the PNG."""
    run_dir = setup.output_dir()
    for key in ("queries", "k", "batch_size"):
        checks.positive_int(key, cfg[key])
    checks.non_negative_int("num_workers", cfg.num_workers)
    checkpoint = checkpoints.load_checkpoint(cfg.ckpt_path)
    data_cfg = eval_data_config(cfg, checkpoint)
    datamodule = rebuild.restore_datamodule(data_cfg, checkpoint)
    device = cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    model = rebuild.restore_model(checkpoint).to(device)
    del checkpoint

    start = time.perf_counter()
    folder = feature_cache(Path(cfg.feature_cache_dir), cfg.ckpt_path, data_cfg, cfg.layer)
    bank, reused = cached_features(
        model.net,
        datamodule,
        "train",
        folder,
        layer=cfg.layer,
        batch_size=cfg.batch_size,
        workers=cfg.num_workers,
        device=device,
    )
    if reused:
        print(f"reusing the training features in {folder}")
    else:
        print(
            f"extracted {bank.shape[0]:,} × {bank.shape[1]} training features in "
            f"{time.perf_counter() - start:.1f} s into {folder}"
        )

    figure_rows = query_rows(cfg, model.net, datamodule, bank, device)
    out = run_dir / "neighbours.png"
    draw(figure_rows, cfg.k, out)
    print(f"figure written to {out}")
    rebuild.log_figure(cfg.get("logger"), run_dir, "neighbours", out)
    return out


def query_rows(
    cfg: DictConfig,
    net: torch.nn.Module,
    datamodule: ClassificationDataModule,
    bank: np.ndarray,
    device: str,
) -> list[FigureRow]:
    """The figure's rows: ``cfg.queries`` validation images spread over the split, each with its
    top-5 classes and its ``cfg.k`` nearest training images; one line printed per query."""
    train_names, val_names = datamodule.item_names("train"), datamodule.item_names("val")
    train_views, val_views = datamodule.item_views("train"), datamodule.item_views("val")
    picks = np.unique(np.linspace(0, len(val_names) - 1, cfg.queries).round().astype(int))
    names = rebuild.class_names(datamodule)
    rows = []
    with FeatureHook(net, cfg.layer) as hook:
        batches = input_batches(datamodule, "val", len(picks), only=picks.tolist(), device=device)
        for images, queries in batches:
            features, probs = hook.features(images)
            distances, indices = nearest(features, bank, cfg.k)
            for row, p, ds, ids in zip(queries.tolist(), probs, distances, indices, strict=True):
                top = p.topk(min(5, len(p)))
                rows.append(
                    FigureRow(
                        query=datamodule.picture(val_views[row][0]),
                        top5=([names[i] for i in top.indices], top.values.tolist()),
                        neighbours=[
                            (datamodule.picture(train_views[i][0]), float(d))
                            for d, i in zip(ds, ids.tolist(), strict=True)
                        ],
                    )
                )
                nearest_items = ", ".join(Path(train_names[i]).name for i in ids[:3].tolist())
                print(
                    f"{val_names[row]}: {names[top.indices[0]]} ({top.values[0]:.2f}); "
                    f"nearest {nearest_items}, ..."
                )
    return rows


if __name__ == "__main__":
    main()
