"""An ImageFolder tree (``<split>/<class>/<image>``) as a compact index and a dataset that survives
the files real disks hold: CMYK, greyscale and PNG-in-JPEG images load as RGB; truncated, empty
and non-image files are skipped with a warning that names them, and never shift a class.

The scan cannot be fooled by what a folder holds: below a class folder it follows no link to a
folder (a link to ``..`` would hand the class another class's images, and two of them loop
forever); entries with an image's name that are not regular files (FIFOs, sockets, devices,
broken links) are never opened; both are left out with one warning per scan. Links to files are
followed; a class folder may itself be a link, unless it links to its split folder or above it.
File and folder names may hold any bytes: the index keeps them as the file system gives them, and
:func:`printable` shows them in logs and CSV files with ``\\xNN`` escapes where not UTF-8.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from classicnets.data.common import DatasetNotFoundError
from classicnets.data.decode import EncodedImage

# Extensions read as images (torchvision's IMG_EXTENSIONS); anything else is ignored.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Written by scripts/prepare_imagenet.py: "<wnid> <names>" per line; Kaggle's ImageNet ships the
# same format as LOC_synset_mapping.txt.
CLASS_NAME_FILES = ("synsets.txt", "LOC_synset_mapping.txt")
# What a broken file raises while it is read or decoded (Pillow uses all of these).
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)
SampleTransform = Callable[[EncodedImage], Tensor]


class SkippedImageWarning(UserWarning):
    """A file under the dataset root could not be decoded and was left out."""


class SkippedEntryWarning(UserWarning):
    """A link to a folder, or an image's name on something that is not a file, was left out."""


def printable(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes that are not UTF-8 (which Python keeps as lone
    surrogates) become ``\\xNN`` escapes, so logs, CSV files and W&B take any file name."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return os.fsencode(name).decode(errors="backslashreplace")
    return name


def find_classes(directory: Path) -> list[str]:
    """The class folders of a split, sorted, empty ones included so no class index ever shifts."""
    if not directory.is_dir():
        return []
    found = [e for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")]
    loops = [e for e in found if e.is_symlink() and _contains(e.path, directory)]
    if loops:  # a class linked to the split folder or above it would hold every class's images
        warnings.warn(
            f"{printable(str(directory))}: ignoring class folders that link to it or above it: "
            f"{', '.join(printable(e.name) for e in loops)}",
            SkippedEntryWarning,
            stacklevel=2,
        )
    return sorted(e.name for e in found if e not in loops)


def _contains(link: str, directory: Path) -> bool:
    """Whether the folder ``link`` points to is ``directory`` or one of its ancestors."""
    return Path(os.path.realpath(directory)).is_relative_to(os.path.realpath(link))


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def read_class_names(root: Path) -> dict[str, str]:
    """Human-readable names per class folder (wnid), if a mapping file sits in ``root``."""
    for filename in CLASS_NAME_FILES:
        if (root / filename).is_file():
            lines = (root / filename).read_text().splitlines()
            return dict(line.split(" ", 1) for line in lines if " " in line)
    return {}


@dataclass(frozen=True)
class FileIndex:
    """The files of one split in three numpy arrays instead of a list of Python objects.

    DataLoader workers touch every sample's entry each epoch; reading a Python object writes its
    reference count, so a forked worker copies each page of a list it reads, and each worker's
    memory grows towards a full copy of the index (pytorch/pytorch#13246). Numpy buffers are
    never written on read and stay shared.
    """

    directory: str  # the split folder; paths are directory/classes[target]/name
    classes: tuple[str, ...]
    names: np.ndarray  # uint8: the UTF-8 file names (relative to their class folder), end to end
    offsets: np.ndarray  # int64, len(self) + 1: name i is names[offsets[i]:offsets[i + 1]]
    targets: np.ndarray  # int32 class index per file, grouped by class in class order

    @classmethod
    def scan(cls, directory: Path, classes: Sequence[str]) -> FileIndex:
        """Index the image files under ``directory/<class>/`` for the given class order."""
        chunks: list[bytes] = []
        lengths: list[int] = []
        counts: list[int] = []
        left_out: list[str] = []
        for name in classes:
            class_dir = directory / name
            found = sorted(walk_images(class_dir, left_out)) if class_dir.is_dir() else []
            encoded = [os.fsencode(f) for f in found]  # any bytes, as the file system has them
            chunks.extend(encoded)
            lengths.extend(map(len, encoded))
            counts.append(len(found))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        names = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
        targets = np.repeat(np.arange(len(classes), dtype=np.int32), counts)
        if left_out:
            shown = ", ".join(printable(p) for p in left_out[:10])
            warnings.warn(
                f"{printable(str(directory))}: left out {len(left_out)} links to folders and "
                f"entries that are not regular files: {shown}{' ...' * (len(left_out) > 10)}",
                SkippedEntryWarning,
                stacklevel=2,
            )
        return cls(str(directory), tuple(classes), names, offsets, targets)

    def __len__(self) -> int:
        return len(self.targets)

    def path(self, i: int) -> str:
        name = os.fsdecode(self.names[self.offsets[i] : self.offsets[i + 1]].tobytes())
        return os.path.join(self.directory, self.classes[self.targets[i]], name)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=len(self.classes))


def walk_images(class_dir: Path, left_out: list[str] | None = None) -> Iterator[str]:
    """Image files below a class folder, relative to it (nested folders too, as torchvision's
    ImageFolder), in no particular order. Links to folders are not followed and entries that are
    not regular files are not listed: both are appended to ``left_out`` (their paths)."""
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(class_dir, folder)) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = os.path.join(folder, entry.name) if folder else entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
                elif entry.is_symlink() and entry.is_dir():
                    _note(left_out, entry.path)  # a link to a folder: never followed
                elif is_image_file(entry.name):
                    if entry.is_file():  # a regular file, or a link to one
                        yield rel
                    else:  # a FIFO, socket, device or broken link: opening it could hang
                        _note(left_out, entry.path)


def holds_images(class_dir: Path) -> bool:
    """Whether :func:`walk_images` finds any image file below ``class_dir``."""
    return next(walk_images(class_dir), None) is not None


def _note(left_out: list[str] | None, path: str) -> None:
    if left_out is not None:
        left_out.append(path)


def read_regular_file(path: str) -> bytes:
    """The bytes of ``path``; ``OSError`` if it is not a regular file (a FIFO swapped in after
    the scan is never waited on: it is opened without blocking and refused)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{printable(path)} is not a regular file")
        return f.read()


class ImageFolderDataset(Dataset):
    """Samples ``(transform(image), class index)`` of a :class:`FileIndex`.

    A file that cannot be decoded is reported once (a :class:`SkippedImageWarning` naming it) and
    flagged in shared memory, so every worker's findings reach the main process. Then either
    another file of the same class stands in (``replace_bad``: training keeps its batch size and
    class balance) or the sample is ``None`` and :class:`SkipCollate` drops it (evaluation, where
    a stand-in would count an image twice).
    """

    def __init__(
        self,
        index: FileIndex,
        transform: SampleTransform,
        *,
        replace_bad: bool,
        bad: Tensor | None = None,
    ) -> None:
        self.index = index
        self.transform = transform
        self.replace_bad = replace_bad
        # One byte per file; pass the same tensor to datasets that share the index.
        self.bad = bad if bad is not None else torch.zeros(len(index), dtype=torch.uint8)
        self.bad.share_memory_()
        # Files of class c are index entries class_start[c]:class_start[c + 1].
        counts = index.class_counts()
        self.class_start = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        sample = self._load(i)
        if sample is None and self.replace_bad:
            sample = self._stand_in(i)
        return sample

    def _load(self, i: int) -> tuple[Tensor, int] | None:
        if self.bad[i]:
            return None
        path = self.index.path(i)
        try:
            pixels = self.transform(EncodedImage(read_regular_file(path)))
        except DECODE_ERRORS as error:
            self.bad[i] = 1
            warnings.warn(
                f"skipping undecodable image {printable(path)}: {error}",
                SkippedImageWarning,
                stacklevel=2,
            )
            return None
        return pixels, int(self.index.targets[i])

    def _stand_in(self, i: int) -> tuple[Tensor, int] | None:
        """Another file of the class of file ``i``; a class of only broken files gives ``None``.

        The choice and the stand-in's augmentation come from a generator of their own, seeded by
        this sample's seed (the sampler's, a function of (run seed, epoch, index):
        :class:`~classicnets.data.sampling.PerSampleSeed`) and ``i``. What the failed decode drew,
        and whether the file was known bad already (which depends on the worker that met it
        first, and on a resume), change nothing: a resumed run gets the same stand-ins."""
        target = int(self.index.targets[i])
        start, stop = int(self.class_start[target]), int(self.class_start[target + 1])
        entropy = np.random.SeedSequence([torch.initial_seed(), i]).generate_state(2, np.uint64)
        choice = torch.Generator().manual_seed(int(entropy[0]) % 2**63)
        outer = torch.get_rng_state()
        try:
            torch.manual_seed(int(entropy[1]) % 2**63)
            for _ in range(min(stop - start, 16)):
                sample = self._load(start + int(torch.randint(stop - start, (), generator=choice)))
                if sample is not None:
                    return sample
            return None
        finally:
            torch.set_rng_state(outer)  # loading a sample never moves the caller's generator

    def skipped_files(self) -> list[str]:
        return [self.index.path(int(i)) for i in self.bad.nonzero().flatten()]

    def bad_state(self) -> list[str]:
        """The files found bad, relative to the split folder: what a checkpoint keeps."""
        return [os.path.relpath(p, self.index.directory) for p in self.skipped_files()]

    def restore_bad(self, relative: Sequence[str]) -> None:
        """Flag the files of :meth:`bad_state` again (those still in the index)."""
        if not relative:
            return
        wanted = {os.path.join(self.index.directory, p) for p in relative}
        for i in range(len(self.index)):
            if self.index.path(i) in wanted:
                self.bad[i] = 1

    @property
    def num_skipped(self) -> int:
        return int(self.bad.sum())


class SkipCollate:
    """``default_collate`` over the samples that decoded, as ``(uint8 images, int64 targets)``.

    A batch whose every file failed comes out empty, with the right trailing shape."""

    def __init__(self, sample_shape: Sequence[int]) -> None:
        self.sample_shape = tuple(sample_shape)

    def __call__(self, samples: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor]:
        kept = [s for s in samples if s is not None]
        if not kept:
            empty = torch.empty((0, *self.sample_shape), dtype=torch.uint8)
            return empty, torch.empty(0, dtype=torch.int64)
        # default_collate writes the stacked batch straight into shared memory inside a worker.
        images = default_collate([s[0] for s in kept])
        return images, torch.tensor([s[1] for s in kept], dtype=torch.int64)


def not_found(root: Path, problem: str) -> DatasetNotFoundError:
    """The one message for a missing or empty dataset: what is expected and how to prepare it."""
    return DatasetNotFoundError(
        f"{problem}. Expected an ImageFolder tree: {root}/train/<class>/*.JPEG and "
        f"{root}/val/<class>/*.JPEG (one folder per class, e.g. the ImageNet wnid n01440764). "
        f"Build it from the official ILSVRC2012 archives with `python scripts/prepare_imagenet.py "
        f"--archives DIR_WITH_TARS --out {root}`, point data.root=... at an existing tree, or "
        f"write a small fake one with `python scripts/make_fake_imagenet.py {root}`."
    )
