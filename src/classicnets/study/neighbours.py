"""Nearest neighbours in a network's feature space (AlexNet Figure 4, section 6.1): "the training
images whose feature vectors in the last hidden layer have the smallest Euclidean distance from
the query's".

Features are extracted once, in batches, into a ``.npy`` file (memory-mapped, so the bank can be
the whole ILSVRC train set: 1.28M × 4096 float32 = 21 GB on disk). The search is exact and
memory-bounded: the bank is read in chunks, each chunk's distances by one matrix product, and the
running top-k merged with the chunk's; the k winners' distances are then recomputed directly, so
an image's distance to itself is exactly 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from classicnets.data.base import ClassificationDataModule
from classicnets.models.layers import find_layer

CHUNK = 16_384  # bank rows per matrix product: 256 MiB of float32 at 4096 dimensions


def feature_layer(net: nn.Module, layer: str | None) -> tuple[str, nn.Module, bool]:
    """(name, module, take its input?): the module named ``layer`` (its output), or by default
    the last fully connected layer (its input: the last hidden layer, AlexNet's fc7)."""
    if layer is not None:
        return (*find_layer(net, layer), False)
    name, module = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    return name, module, True


class FeatureHook:
    """Run the network and keep the feature vectors of :func:`feature_layer` on the way."""

    def __init__(self, net: nn.Module, layer: str | None) -> None:
        self.net = net.eval()
        _, self.module, self.take_input = feature_layer(net, layer)
        self.captured: list[Tensor] = []

    def __enter__(self) -> FeatureHook:
        self.handle = self.module.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()

    def _keep(self, _module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        self.captured.append((args[0] if self.take_input else output).flatten(1))

    @torch.no_grad()
    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(features, class probabilities) of a batch, on the CPU."""
        self.captured.clear()
        probs = self.net(images).softmax(dim=-1)
        return self.captured[0].float().cpu(), probs.float().cpu()


def _collate(samples: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor]:
    """The views that decoded, stacked, and their rows (files that do not decode are None)."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.stack([s[0] for s in kept]), torch.tensor([s[1] for s in kept])


def input_batches(
    datamodule: ClassificationDataModule,
    split: str,
    batch_size: int = 64,
    workers: int = 0,
    only: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[Tensor, Tensor]]:
    """(network input on ``device``, item rows) over a split (or its items ``only``), each
    image's centre view once, through the DataModule's own device step (the paper's pixel scale,
    the recipe's input size)."""
    dataset = datamodule.item_views(split)
    if only is not None:
        dataset = Subset(dataset, list(only))
    loader = DataLoader(dataset, batch_size, num_workers=workers, collate_fn=_collate)
    for pixels, rows in loader:
        if len(rows):
            yield datamodule.network_input(pixels, device), rows


@torch.no_grad()
def extract_features(
    net: nn.Module,
    datamodule: ClassificationDataModule,
    split: str,
    out: Path,
    *,
    layer: str | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Write the split's features to ``out`` (.npy, one row per item of the DataModule's
    ``item_names``; undecodable files leave a row of NaN, which no search returns) and return it
    memory-mapped. ``net`` runs where it is; ``device`` is where its input goes."""
    n = len(datamodule.item_views(split))
    bank = None
    with FeatureHook(net, layer) as hook:
        for images, rows in input_batches(datamodule, split, batch_size, workers, device=device):
            features = hook.features(images)[0].numpy()
            if bank is None:
                bank = np.lib.format.open_memmap(out, "w+", np.float32, (n, features.shape[1]))
                bank[:] = np.nan
            bank[rows.numpy()] = features
    if bank is None:
        raise FileNotFoundError(f"no image of the {split} split could be read")
    bank.flush()
    return np.load(out, mmap_mode="r")


def feature_cache(root: Path, ckpt_path: str, data_cfg: DictConfig, layer: str | None) -> Path:
    """The folder of the features of one (checkpoint file, data config, layer): a rerun with the
    same three reuses them; a checkpoint written again, other data or another layer do not."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    data = OmegaConf.to_yaml(data_cfg, resolve=True, sort_keys=True)
    key = f"{ckpt}|{ckpt.stat().st_mtime_ns}|{data}|{layer}"
    return root / f"{ckpt.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def cached_features(
    net: nn.Module, datamodule: ClassificationDataModule, split: str, folder: Path, **extract: Any
) -> tuple[np.ndarray, bool]:
    """(features of the split, whether they were reused): read from ``folder`` when they were
    extracted there from the same items, else extracted into it now (``extract``: the keyword
    arguments of :func:`extract_features`)."""
    folder.mkdir(parents=True, exist_ok=True)
    cache, listing = folder / f"features_{split}.npy", folder / f"items_{split}.txt"
    items = datamodule.item_names(split)
    if cache.is_file() and listing.is_file() and listing.read_text().split("\n") == items:
        return np.load(cache, mmap_mode="r"), True
    listing.unlink(missing_ok=True)  # a listing stands for finished features only
    bank = extract_features(net, datamodule, split, cache, **extract)
    listing.write_text("\n".join(items))
    return bank, False


def nearest(queries: Tensor, bank: np.ndarray, k: int, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """Exact k nearest rows of ``bank`` (N, D) to each query (Q, D) in Euclidean distance:
    (distances, indices), each (Q, k), nearest first."""
    queries = queries.float()
    q_norms = queries.pow(2).sum(1, keepdim=True)
    best_d = torch.full((len(queries), 0), float("inf"))
    best_i = torch.empty((len(queries), 0), dtype=torch.long)
    for start in range(0, len(bank), chunk):
        rows = torch.tensor(bank[start : start + chunk])  # one chunk in memory at a time
        squared = q_norms - 2 * queries @ rows.T + rows.pow(2).sum(1)
        squared = squared.nan_to_num(nan=float("inf"))  # rows of unreadable files
        d, i = squared.topk(min(k, squared.shape[1]), dim=1, largest=False)
        best_d, order = torch.cat([best_d, d], 1).topk(
            min(k, best_d.shape[1] + d.shape[1]), dim=1, largest=False
        )
        best_i = torch.cat([best_i, i + start], 1).gather(1, order)
    # Exact distances of the winners (the product form loses digits for large norms).
    winners = torch.from_numpy(np.stack([bank[row] for row in best_i.numpy()]))
    exact = (winners - queries[:, None]).norm(dim=-1)
    exact, order = exact.sort(dim=1)
    return exact, best_i.gather(1, order)


@dataclass
class FigureRow:
    """One query of Figure 4: its picture, its top-5 (names, probabilities), and its neighbours'
    pictures with their distances, nearest first."""

    query: np.ndarray
    top5: tuple[list[str], list[float]]
    neighbours: list[tuple[np.ndarray, float]]


def draw(figure_rows: Sequence[FigureRow], k: int, out: Path) -> None:
    """AlexNet Figure 4 (left): per row the query, its top-5 bars, and its ``k`` neighbours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(figure_rows),
        k + 2,
        figsize=(1.3 * (k + 3), 1.4 * len(figure_rows)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 1.8] + [1] * k},
    )
    for axs, row in zip(axes, figure_rows, strict=True):
        axs[0].imshow(row.query)
        axs[0].set_title("query", fontsize=7)
        names, probs = row.top5
        axs[1].barh(range(len(probs))[::-1], probs, color="tab:red")
        axs[1].set_xlim(0, 1)
        axs[1].set_yticks(range(len(probs))[::-1], [n[:18] for n in names], fontsize=6)
        axs[1].tick_params(axis="x", labelsize=5)
        for ax, (picture, distance) in zip(axs[2:], row.neighbours, strict=True):
            ax.imshow(picture)
            ax.set_title(f"{distance:.1f}", fontsize=7)
        for ax in (axs[0], *axs[2:]):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
