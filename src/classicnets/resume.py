"""What a run needs to resume: checkpoints that are whole, and the newest of them.

A re-run with the same run directory (``ckpt_path: auto``) resumes from :func:`latest_checkpoint`;
the callbacks in :mod:`classicnets.callbacks.resumable` put the RNG states into checkpoints and
save one when the run is stopped by a signal.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from classicnets.safe_load import load_file

LAST = "last.ckpt"
HPC_GLOB = "hpc_ckpt_*.ckpt"  # Lightning's SLURM auto-requeue checkpoints, in default_root_dir


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it, flush it to disk, then rename it over
    the old one: a crash or a kill while saving leaves the previous checkpoint whole. Read local
    checkpoints (resume) with the restricted unpickler of :func:`classicnets.safe_load.load_file`.

    Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file
    lies in the system temp directory; where that is another file system than the checkpoints (a
    node-local /tmp, checkpoints on a shared disk) the final move copies over the old file, and
    nothing is synced to disk. Remote paths (``s3://``...) keep Lightning's way.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX and Windows within one file system
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            return super().load_checkpoint(path, map_location, weights_only=True)
        return load_file(path, map_location=map_location or "cpu")


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX; a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest of ``<run dir>/checkpoints/last.ckpt`` and Lightning's SLURM requeue checkpoints
    (``<run dir>/hpc_ckpt_N.ckpt``), or None in a fresh directory."""
    candidates = [run_dir / "checkpoints" / LAST, *run_dir.glob(HPC_GLOB)]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime_ns, default=None)
