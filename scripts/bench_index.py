"""Listing a big ImageFolder tree against loading its cached file index, in one run.

    python scripts/bench_index.py --classes 1000 --per-class 200     # 200k empty files in /tmp
    python scripts/bench_index.py --root /data/imagenet/train         # an existing split folder

A generated tree holds empty ``.JPEG`` files (the index holds names only) and is deleted
afterwards. The scan is the cold path of every process without the cache; the cached load
(a stat of each class folder, then one ``.npz``) is what each later process pays. The page
cache is warm for both, so on a network filesystem the scan's share only grows.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from classicnets.data.folder import FileIndex, find_classes
from classicnets.data.index_cache import cache_file, cached_scan
from classicnets.run.errors import ArgumentParser


def generate(root: Path, classes: int, per_class: int) -> Path:
    """``root/train/<wnid>/<wnid>_<j>.JPEG``, all empty."""
    train = root / "train"
    for c in range(classes):
        folder = train / f"n{c:08d}"
        folder.mkdir(parents=True)
        for j in range(per_class):
            (folder / f"n{c:08d}_{j}.JPEG").touch()
    return train


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="an existing split folder (<root>/<class>/*)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        split = args.root or generate(Path(tmp), args.classes, args.per_class)
        made = time.perf_counter() - start
        cache_dir = Path(tmp) / "cache"  # never beside a user's data
        classes = find_classes(split)
        scan = best_of(args.repeats, lambda: FileIndex.scan(split, classes))
        first = best_of(1, lambda: cached_scan(split, classes, cache_dir))  # scan + write
        cached = best_of(args.repeats, lambda: cached_scan(split, classes, cache_dir))
        index = cached_scan(split, classes, cache_dir)
        size = cache_file(split, cache_dir).stat().st_size
        if args.root is None:
            shutil.rmtree(split)

    print(f"{len(index)} files in {len(classes)} classes ({split if args.root else 'generated'})")
    if args.root is None:
        print(f"generating the tree:    {made:8.2f} s")
    print(f"scan (no cache):        {scan:8.3f} s")
    print(f"scan + write the cache: {first:8.3f} s")
    print(f"cached load:            {cached:8.3f} s  ({size / 2**20:.1f} MiB)")
    print(f"ratio scan / cached load: {scan / cached:.0f}×")


if __name__ == "__main__":
    main()
