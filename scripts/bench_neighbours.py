"""The cost of src/neighbours.py's exact search, on synthetic features, per million bank images.

    python scripts/bench_neighbours.py --rows 100000             # 100k × 4096 float32 features

The bank is searched in chunks (classicnets.study.neighbours.nearest) as the whole ILSVRC train set
would be from its memory-mapped features; the figure scales linearly with the bank's rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

from classicnets.study.neighbours import CHUNK, nearest


def benchmark(rows: int, dim: int = 4096, queries: int = 5) -> str:
    """Search cost on synthetic features, scaled to a million bank images."""
    bank = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)
    query = torch.from_numpy(bank[:queries].copy())
    start = time.perf_counter()
    distances, indices = nearest(query, bank, k=6)
    seconds = time.perf_counter() - start
    assert (indices[:, 0] == torch.arange(queries)).all() and distances[:, 0].max() == 0
    per_million = seconds * 1e6 / rows
    return (
        f"{queries} queries against {rows:,} × {dim} float32 features: {seconds:.2f} s, "
        f"{per_million:.1f} s per million bank images ({dim * 4 * 1e6 / 2**30:.1f} GiB of "
        f"features per million, read in chunks of {CHUNK:,} rows = "
        f"{CHUNK * dim * 4 / 2**20:.0f} MiB, plus {CHUNK * queries * 4 / 2**20:.1f} MiB of "
        "distances)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="bank rows (100000)")
    parser.add_argument("--dim", type=int, default=4096, help="feature size (AlexNet fc7: 4096)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.dim < 1:
        parser.error("--rows and --dim must be positive")
    print(benchmark(args.rows, args.dim))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
