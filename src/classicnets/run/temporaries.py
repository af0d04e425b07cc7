"""Temporary files of a write that is made atomic (checkpoints, metrics.json), and removing those
that a process left behind when it was killed.

A file is written to ``.<name>.tmp-<host>-<pid>`` beside its final place and renamed over it, so
a reader never sees half a file. A process killed while writing leaves the temporary file (a
VGG checkpoint: 500 MB); the next process that writes into that directory removes it when the
process named in it is no longer alive. The host is part of the name because run directories
often live on a disk that several nodes share, and a process id means something on its own node
only: files of other hosts are left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

MARK = ".tmp-"
LEGACY_METRICS_TMP = "metrics.json.tmp"  # without the writer's id: written by older versions


def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    return path.with_name(f".{path.name}{MARK}{socket.gethostname()}-{os.getpid()}")


def remove_stale(directory: Path) -> list[Path]:
    """Remove the temporary files in ``directory`` whose writer, a process of this host, is no
    longer alive (and the id-less ``metrics.json.tmp`` of older versions); return them."""
    if not directory.is_dir():
        return []
    removed = []
    for path in [*directory.glob(f".*{MARK}*"), directory / LEGACY_METRICS_TMP]:
        if path.is_file() and not path.is_symlink() and not _writer_alive(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
            log.info("removed %s, left by a process that was stopped while writing it", path)
    return removed


def _writer_alive(name: str) -> bool:
    """Whether the process named in a temporary file's name may still be writing it: a live
    process of this host, or any process of another host (whose ids mean nothing here)."""
    if name == LEGACY_METRICS_TMP:
        return False
    writer = name.rpartition(MARK)[2]
    host, _, pid = writer.rpartition("-")  # ".last.ckpt.tmp-<pid>" of older versions: no host
    if host and host != socket.gethostname():
        return True
    if not pid.isdigit():
        return True  # not a name this module wrote: leave it
    return _alive(int(pid))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
