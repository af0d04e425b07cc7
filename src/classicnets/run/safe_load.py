"""The one way this project reads a checkpoint or a weights file: PyTorch's restricted unpickler.

``torch.load(..., weights_only=False)`` runs whatever a pickle asks for, so a checkpoint or a
``.pth`` from elsewhere could execute code the moment it is opened. Every reader here (resume,
eval, ensembles, predict, export, ``model.init_from``) goes through :func:`load_file`, which
allows tensors, containers and plain numbers and strings only — all that our own checkpoints hold
(the resolved config and the class mapping are plain data, the RNG states are tensors).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

# torch.hub's rule for torchvision's files: the name carries the first hex digits of the file's
# SHA-256 (``resnet50-0676ba61.pth``). Eight or more, so that run names like ``epoch-3.pt`` don't
# count as a hash.
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")


class UnsafeCheckpointError(Exception):
    """The file needs more than plain data to unpickle: it is refused, nothing in it ran."""


class CorruptCheckpointError(Exception):
    """The file is not a readable checkpoint (truncated, not a torch file, or damaged);
    ``reason`` is the cause alone, without the advice."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message.split(". ")[0]


class HashMismatchError(Exception):
    """A torchvision-style weights file whose content does not match the hash in its name."""


def load_file(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """Read a checkpoint or weights file with ``weights_only=True``; a clear error otherwise.
    ``mmap``: map the tensors' bytes instead of reading them (the file is still unpickled whole
    and its zip directory read, so a truncated file fails the same way)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a checkpoint (.ckpt) or weights file")
    check_hash_in_name(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower():
            raise UnsafeCheckpointError(
                f"{path} is not a plain checkpoint: unpickling it needs code "
                f"({_first_line(err)}); it was refused and nothing in it ran. If you trust the "
                "file, re-save its weights in a plain form: torch.save(obj.state_dict(), NEW)"
            ) from None
        raise _corrupt(path, err) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise _corrupt(path, err) from None


def check_hash_in_name(path: Path) -> None:
    """torchvision's check: a name ``<arch>-<hex>.pth`` promises a SHA-256 starting with <hex>."""
    match = HASH_IN_NAME.search(path.name)
    if match is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    promised, actual = match.group(1), digest.hexdigest()
    if not actual.startswith(promised):
        raise HashMismatchError(
            f"{path}: the SHA-256 of the file starts with {actual[: len(promised)]}, its name "
            f"promises {promised}; the download is damaged or not the file named. "
            "Download it again"
        )


def _corrupt(path: Path, err: BaseException) -> CorruptCheckpointError:
    reason = _first_line(err).split(". ")[0]  # torch's zip errors go on for several sentences
    return CorruptCheckpointError(
        f"{path} is not a readable checkpoint, it is truncated or damaged ({_first_line(err)}); "
        "use another copy or another checkpoint of the run",
        reason,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
