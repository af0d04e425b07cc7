"""Top-k classes of image files under a checkpoint's own test protocol, for src/predict.py."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from classicnets.data.base import ClassificationDataModule
from classicnets.data.folder import DECODE_ERRORS, is_image_file, printable
from classicnets.study.rebuild import class_names
from classicnets.training.module import ClassificationModule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes: a row of predictions.csv."""

    file: str
    rank: int
    class_index: int
    folder: str
    name: str
    probability: float


def list_images(inputs: str | Path) -> list[Path]:
    """An image file, or the image files below a folder (sorted, nested folders too)."""
    path = Path(inputs).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"inputs={inputs} does not exist; pass an image file or a folder")
    found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p.name))
    if not found:
        raise FileNotFoundError(f"inputs={inputs} holds no image files (.jpg, .png, ...)")
    return found


def predict_files(
    model: ClassificationModule,
    datamodule: ClassificationDataModule,
    files: Sequence[Path],
    *,
    top_k: int = 5,
    batch_size: int = 16,
) -> tuple[list[Prediction], list[Path]]:
    """Every decodable file's top-k (class, probability); and the files that did not decode."""
    folders, names = datamodule.classes, class_names(datamodule)
    top_k = min(top_k, model.hparams.num_classes)
    device = next(model.parameters()).device
    rows: list[Prediction] = []
    skipped: list[Path] = []
    for batch_files, pixels, bad in _decoded_batches(datamodule, files, batch_size):
        skipped += bad
        if not batch_files:
            continue
        with torch.no_grad():
            images = datamodule.network_input(pixels, device)
            probs = model(images).softmax(dim=-1)  # multi-crop: softmax averaged over the crops
        values, indices = probs.topk(top_k, dim=-1)
        for file, ps, ks in zip(batch_files, values.tolist(), indices.tolist(), strict=True):
            for rank, (p, k) in enumerate(zip(ps, ks, strict=True), start=1):
                # Names that are not UTF-8 as \xNN escapes: the CSV, the table and W&B take them.
                shown = printable(str(file)), printable(folders[k]), printable(names[k])
                rows.append(Prediction(shown[0], rank, k, shown[1], shown[2], p))
    return rows, skipped


def _decoded_batches(
    datamodule: ClassificationDataModule, files: Sequence[Path], batch_size: int
) -> Iterator[tuple[list[Path], torch.Tensor | list, list[Path]]]:
    """(files, their stacked pixels, the files of this batch that did not decode)."""
    whole = datamodule.takes_whole_images  # groups of views of any size: one image at a time
    batch_size = 1 if whole else batch_size
    for start in range(0, len(files), batch_size):
        kept, pixels, bad = [], [], []
        for file in files[start : start + batch_size]:
            try:
                pixels.append(datamodule.decode_for_test(file.read_bytes()))
                kept.append(file)
            except DECODE_ERRORS as error:
                log.warning("skipping undecodable image %s: %s", printable(str(file)), error)
                bad.append(file)
        if whole:
            yield kept, pixels[0] if pixels else [], bad
        else:
            yield kept, torch.stack(pixels) if pixels else torch.empty(0), bad


def write_csv(rows: Sequence[Prediction], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([field.name for field in fields(Prediction)])
        writer.writerows(astuple(row) for row in rows)


def print_table(rows: Sequence[Prediction], console: Console, title: str, root: Path) -> None:
    """The rows as a rich table, files named relative to ``root`` (the folder predicted)."""
    table = Table(title=title)
    for column in ("file", "rank", "class", "name", "probability"):
        table.add_column(column, justify="right" if column in ("rank", "probability") else "left")
    previous = None
    for row in rows:
        shown = _relative(row.file, root) if row.file != previous else ""  # once per image
        table.add_row(shown, str(row.rank), row.folder, row.name, f"{row.probability:.4f}")
        previous = row.file
    console.print(table)


def _relative(file: str, root: Path) -> str:
    path = Path(file)
    return str(path.relative_to(root)) if root.is_dir() and path.is_relative_to(root) else path.name
