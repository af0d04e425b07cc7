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

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from lightning import LightningDataModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from classicnets.data.decode import EncodedImage
from classicnets.data.folder import DECODE_ERRORS, FileIndex
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.protocols import CenterCrop

CHUNK = 16_384  # bank rows per matrix product: 256 MiB of float32 at 4096 dimensions


def feature_layer(net: nn.Module, layer: str | None) -> tuple[str, nn.Module, bool]:
    """(name, module, take its input?): the module named ``layer`` (its output), or by default
    the last fully connected layer (its input: the last hidden layer, AlexNet's fc7)."""
    modules = dict(net.named_modules())
    if layer is None:
        name = [n for n, m in modules.items() if isinstance(m, nn.Linear)][-1]
        return name, modules[name], True
    found = [n for n in modules if n == layer or n.split(".")[-1] == layer]
    if not found:
        raise ValueError(f"no layer named {layer!r}; e.g. {', '.join(list(modules)[1:9])}")
    return found[0], modules[found[0]], False


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


class _Folder(Dataset):
    """(centre crop, index) of each file of a split; None for a file that does not decode."""

    def __init__(self, index: FileIndex, crop: CenterCrop) -> None:
        self.index, self.crop = index, crop

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        try:
            with open(self.index.path(i), "rb") as f:
                return self.crop(EncodedImage(f.read())), i
        except DECODE_ERRORS:
            return None


def _collate(samples: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor]:
    kept = [s for s in samples if s is not None]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.stack([s[0] for s in kept]), torch.tensor([s[1] for s in kept])


def split_items(datamodule: LightningDataModule, split: str) -> list[str]:
    """What each row of a split's features is: a file path (folders) or ``digit <i>`` (MNIST)."""
    if isinstance(datamodule, ImageNetDataModule):
        index = FileIndex.scan(datamodule.root / datamodule.splits[split], datamodule.classes)
        return [index.path(i) for i in range(len(index))]
    datamodule.setup()
    return [f"{split} digit {i}" for i in range(len(datamodule.splits[split]))]


def input_batches(
    datamodule: LightningDataModule,
    split: str,
    batch_size: int = 64,
    workers: int = 0,
    only: Sequence[int] | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """(network input, item indices) over a split (or its items ``only``), each image
    centre-cropped once."""
    if isinstance(datamodule, ImageNetDataModule):
        index = FileIndex.scan(datamodule.root / datamodule.splits[split], datamodule.classes)
        dataset: Dataset = _Folder(index, CenterCrop(datamodule.input_size))
        collate = _collate
    else:
        datamodule.setup()
        images = datamodule.splits[split].tensors[0]
        dataset, collate = TensorDataset(images, torch.arange(len(images))), None
    if only is not None:
        dataset = Subset(dataset, list(only))
    loader = DataLoader(dataset, batch_size, num_workers=workers, collate_fn=collate)
    for images, rows in loader:
        if len(rows):
            # The DataModule's own device step: the paper's pixel scale, the recipe's input size.
            images, rows = datamodule.on_after_batch_transfer((images, rows), 0)
            yield images, rows


@torch.no_grad()
def extract_features(
    net: nn.Module,
    datamodule: LightningDataModule,
    split: str,
    out: Path,
    *,
    layer: str | None = None,
    batch_size: int = 64,
    workers: int = 0,
) -> np.ndarray:
    """Write the split's features to ``out`` (.npy, one row per item of :func:`split_items`;
    undecodable files leave a row of NaN, which no search returns) and return it memory-mapped."""
    n = len(split_items(datamodule, split))
    bank = None
    with FeatureHook(net, layer) as hook:
        for images, rows in input_batches(datamodule, split, batch_size, workers):
            features = hook.features(images)[0].numpy()
            if bank is None:
                bank = np.lib.format.open_memmap(out, "w+", np.float32, (n, features.shape[1]))
                bank[:] = np.nan
            bank[rows.numpy()] = features
    if bank is None:
        raise FileNotFoundError(f"no image of the {split} split could be read")
    bank.flush()
    return np.load(out, mmap_mode="r")


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
        best_d, order = torch.cat([best_d, d], 1).topk(min(k, best_d.shape[1] + d.shape[1]),
                                                        dim=1, largest=False)  # fmt: skip
        best_i = torch.cat([best_i, i + start], 1).gather(1, order)
    # Exact distances of the winners (the product form loses digits for large norms).
    winners = torch.from_numpy(np.stack([bank[row] for row in best_i.numpy()]))
    exact = (winners - queries[:, None]).norm(dim=-1)
    exact, order = exact.sort(dim=1)
    return exact, best_i.gather(1, order)
