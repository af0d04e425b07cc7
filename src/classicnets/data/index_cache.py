"""A :class:`FileIndex` saved once and loaded by every later process, instead of a fresh scan.

Listing ImageNet's 1.28M training files takes minutes on a network filesystem, and every process
of every run did it. The cache is one ``.npz`` of the index's arrays, written atomically (a
temporary file renamed over the old one) beside the data, in ``<root>/.classicnets-index/``, or in
``cache_dir`` when given; where the data's folder is read-only it goes to the user's cache
(``$XDG_CACHE_HOME/classicnets``, else ``~/.cache/classicnets``).

It is keyed on the split folder's path, the class order and the modification time of each class
folder: adding, removing or renaming a file in a class folder changes that folder's time, so the
next process scans afresh. Changes inside nested sub-folders of a class folder are not seen (the
ImageNet layout has none): touch the class folder, or delete the cache, after editing those.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classicnets.data.folder import FileIndex

log = logging.getLogger(__name__)

CACHE_FOLDER = ".classicnets-index"  # beside the split folders, so writing it changes no key
FORMAT = 1  # bump when the arrays' layout changes: old caches then miss


def tree_key(directory: Path, classes: Sequence[str]) -> str:
    """What the index depends on: the split folder, the class order, each class folder's mtime."""
    mtimes = []
    for name in classes:
        try:
            mtimes.append(os.stat(directory / name).st_mtime_ns)
        except FileNotFoundError:
            mtimes.append(-1)  # a class missing from this split; its appearance changes the key
    payload = json.dumps([FORMAT, str(directory.resolve()), list(classes), mtimes])
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_file(directory: Path, cache_dir: str | Path | None = None) -> Path:
    """Where the index of ``directory`` is cached: one file per split folder."""
    folder = Path(cache_dir) if cache_dir is not None else directory.parent / CACHE_FOLDER
    digest = hashlib.sha256(os.fsencode(directory.resolve())).hexdigest()[:16]
    return folder / f"{directory.name}-{digest}.npz"


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "classicnets"


def cached_scan(
    directory: Path, classes: Sequence[str], cache_dir: str | Path | None = None
) -> FileIndex:
    """The index of ``directory`` for ``classes``: from the cache when the tree is unchanged,
    else scanned and cached for the next process."""
    key = tree_key(directory, classes)
    candidates = [cache_file(directory, cache_dir)]
    if cache_dir is None:
        candidates.append(cache_file(directory, user_cache_dir()))
    for path in candidates:
        index = load(path, key, directory, classes)
        if index is not None:
            log.info("%s: file index loaded from %s", directory, path)
            return index
    index = FileIndex.scan(directory, classes)
    for path in candidates:
        try:
            save(path, key, index)
        except OSError as error:  # read-only data, a full disk: the next candidate, or none
            log.info("cannot cache the file index at %s (%s)", path, error)
            continue
        log.info("%s: file index cached at %s", directory, path)
        break
    return index


def load(path: Path, key: str, directory: Path, classes: Sequence[str]) -> FileIndex | None:
    """The cached index if ``path`` holds one for this ``key``; None for a miss or a bad file."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) != key:
                return None
            return FileIndex(
                str(directory),
                tuple(classes),
                cached["names"],
                cached["offsets"],
                cached["targets"],
            )
    except FileNotFoundError:
        return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        log.warning("ignoring the unreadable file index cache %s (%s); rescanning", path, error)
        return None


def save(path: Path, key: str, index: FileIndex) -> None:
    """Write atomically: a crash or a concurrent writer never leaves a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, key=np.str_(key), names=index.names, offsets=index.offsets, targets=index.targets
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
