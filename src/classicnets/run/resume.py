"""What a run needs to resume: checkpoints that are whole, and the newest of them.

A re-run with the same run directory (``ckpt_path: auto``) resumes from :func:`latest_checkpoint`;
a ``last.ckpt`` that cannot be read gives way to the newest whole checkpoint;
the callbacks in :mod:`classicnets.run.callbacks.resumable` put the RNG states into checkpoints and
save one when the run is stopped by a signal.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from classicnets.run import temporaries
from classicnets.run.safe_load import CorruptCheckpointError, load_file

log = logging.getLogger(__name__)

LAST = "last.ckpt"
CHECKPOINTS = "checkpoints"  # <run dir>/checkpoints/, where last.ckpt and the best ones are
HPC_GLOB = "hpc_ckpt_*.ckpt"  # Lightning's SLURM auto-requeue checkpoints, in default_root_dir


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """The disk filled up while a checkpoint was written; the previous one is whole."""

    def __init__(self, path: Path, advice: str = "") -> None:
        advice = advice or (
            "the checkpoints saved before it are intact. Free space there and run the same "
            "command again: it resumes from the newest whole checkpoint"
        )
        super().__init__(f"no space left on the disk while writing {path}; {advice}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it, flush it to disk, then rename it over
    the old one: a crash or a kill while saving leaves the previous checkpoint whole. Read local
    checkpoints (resume) with the restricted unpickler of
    :func:`classicnets.run.safe_load.load_file`.

    Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file
    lies in the system temp directory; where that is another file system than the checkpoints (a
    node-local /tmp, checkpoints on a shared disk) the final move copies over the old file, and
    nothing is synced to disk. Remote paths (``s3://``...) keep Lightning's way.
    """

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()  # directories already rid of dead processes' files

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._swept:  # what a process killed while saving left here
            temporaries.remove_stale(path.parent)
            self._swept.add(path.parent)
        tmp = temporaries.temporary_path(path)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX and Windows within one file system
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError) and err.errno in DISK_FULL:
                raise DiskFullError(path) from err
            raise
        _fsync_dir(path.parent)

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
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


def candidates(run_dir: Path) -> list[Path]:
    """Every checkpoint a re-run in ``run_dir`` could resume from, newest first: ``last.ckpt``,
    Lightning's SLURM requeue checkpoints (``<run dir>/hpc_ckpt_N.ckpt``), the best ones."""
    found = [*run_dir.glob(f"{CHECKPOINTS}/*.ckpt"), *run_dir.glob(HPC_GLOB)]
    return sorted(
        (p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime_ns, reverse=True
    )


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest whole checkpoint of ``run_dir``, or None in a fresh directory. One that cannot
    be read (cut short by a copy or a full disk) is passed over with a warning naming it and the
    one taken instead; when none is whole, the newest one's error is raised."""
    found = candidates(run_dir)
    errors: list[CorruptCheckpointError] = []
    for path in found:
        try:
            read_training_checkpoint(path)
        except CorruptCheckpointError as err:
            errors.append(err)
            continue
        if errors:
            log.warning(
                "%s cannot be read (%s); resuming from %s, the newest whole checkpoint",
                found[0],
                errors[0].reason,
                path,
            )
        return path
    if errors:
        raise errors[0]
    return None


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint that training can resume from, read through :func:`load_file`; a truncated
    file or one that is not a training checkpoint raises ``CorruptCheckpointError``. Its tensors
    are memory-mapped, not read: ``trainer.fit`` reads the file again to resume from it."""
    checkpoint = load_file(path, mmap=True)
    if not isinstance(checkpoint, dict) or not {"state_dict", "loops"} <= checkpoint.keys():
        raise CorruptCheckpointError(
            f"{path} is not a training checkpoint of a classicnets run (it holds no model and "
            "loop state); pass the last.ckpt or a best-*.ckpt of a run's checkpoints/ folder"
        )
    return checkpoint
