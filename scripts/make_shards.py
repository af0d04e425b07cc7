"""Convert an ImageFolder tree (train and val) into streaming shards (litdata) for imagenet_shards.

    python scripts/make_shards.py --root /data/imagenet --out /data/imagenet_shards
    python scripts/make_shards.py --root /data/imagenet --out s3://bucket/imagenet --workers 32
    python src/train.py model=resnet50 data=imagenet_shards data.root=/data/imagenet_shards

Each item keeps the file's original bytes (no re-encoding: the pixels are the tree's), its class
index and its path; files that are not images at all are left out with a warning, as the folder
loader skips them. Training items are written in a fixed random order, so every chunk holds a mix
of classes and litdata's chunk-level shuffle gives mixed batches. ``<out>/dataset.json`` holds the
class order (the train folders, sorted), the class names (``synsets.txt``) and the item counts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from litdata import StreamingDataset, optimize

from classicnets.data.decode import EncodedImage
from classicnets.data.folder import DECODE_ERRORS, not_found
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.index_cache import cached_scan
from classicnets.data.shards import METADATA, is_url
from classicnets.run.errors import ArgumentParser, exit_on_user_error

# Bytes per chunk: our choice. ~500 ImageNet JPEGs (110 KB on average) per chunk; object-store
# reads of tens of MB amortise the per-request latency, and a chunk stays quick to fetch.
CHUNK_BYTES = "64MB"
ORDER_SEED = 0  # the fixed shuffle of the training items at write time


def read_item(entry: tuple[str, int, str]) -> Iterator[dict[str, object]]:
    """One file as a shard item; a file that is not an image yields nothing (and says so)."""
    path, label, name = entry
    try:
        data = Path(path).read_bytes()
        EncodedImage(data)  # the header: empty, garbage and non-image files stop here
    except DECODE_ERRORS as error:
        print(f"warning: leaving out {path}: not an image ({error})", file=sys.stderr)
        return
    # The name as bytes: litdata would store a str that names an existing file as that file.
    yield {"image": data, "label": label, "name": name.encode()}


def split_entries(root: Path, split: str, classes: list[str], shuffle: bool) -> list[tuple]:
    index = cached_scan(root / split, classes)
    entries = [
        (index.path(i), int(index.targets[i]), os.path.relpath(index.path(i), root / split))
        for i in range(len(index))
    ]
    if shuffle:
        order = np.random.default_rng(ORDER_SEED).permutation(len(entries))
        entries = [entries[i] for i in order]
    return entries


def write_shards(
    entries: list[tuple], output_dir: str, chunk_bytes: str, workers: int, verbose: bool = True
) -> float:
    """Pack ``entries`` (path, label, name) into litdata chunks at ``output_dir``; seconds taken."""
    start = time.perf_counter()
    optimize(
        fn=read_item,
        inputs=entries,
        output_dir=output_dir,
        chunk_bytes=chunk_bytes,
        num_workers=min(workers, len(entries)),
        reorder_files=False,  # keep the order written above
        mode="overwrite",
        start_method="fork",  # workers start in a second, not after re-importing torch
        verbose=verbose,
    )
    return time.perf_counter() - start


def write_metadata(out: str, metadata: dict[str, object]) -> None:
    text = json.dumps(metadata, indent=1).encode()
    if is_url(out):
        import obstore
        from obstore.store import from_url

        obstore.put(from_url(out), METADATA, text)
        return
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{METADATA}.")
    with os.fdopen(fd, "wb") as f:
        f.write(text)
    os.replace(tmp, Path(out) / METADATA)  # atomically: a reader never sees half a file


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="ImageFolder tree: train/, val/")
    parser.add_argument("--out", required=True, help="a folder or an object-store URL")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk-bytes", default=CHUNK_BYTES)
    args = parser.parse_args(argv)
    out = args.out.rstrip("/")
    if not is_url(out):
        Path(out).mkdir(parents=True, exist_ok=True)

    folders = ImageNetDataModule(args.root)  # the classes and the errors of data=imagenet
    counts: dict[str, int] = {}
    for split in args.splits:
        entries = split_entries(args.root, split, folders.classes, shuffle=split == "train")
        if not entries:
            raise not_found(args.root, f"{args.root / split} holds no images of the classes")
        print(f"{split}: {len(entries)} files -> {out}/{split}", file=sys.stderr)
        elapsed = write_shards(entries, f"{out}/{split}", args.chunk_bytes, args.workers)
        counts[split] = len(StreamingDataset(f"{out}/{split}"))
        print(
            f"{split}: {counts[split]} images in {elapsed:.1f} s "
            f"({counts[split] / elapsed:.0f} images/s, {args.workers} workers)",
            file=sys.stderr,
        )
    metadata = {
        "classes": folders.classes,
        "class_names": folders.class_names,
        "splits": counts,
        "source": str(args.root.resolve()),
    }
    write_metadata(out, metadata)


if __name__ == "__main__":
    main()
