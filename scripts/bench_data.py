"""Images per second per CPU core: our training pipeline against the torchvision reference, same
files, same augmentation, same run.

    python scripts/bench_data.py --fake 500 --preset alexnet --workers 1
    python scripts/bench_data.py --root /data/imagenet --limit 5000 --workers 4
    python scripts/bench_data.py --fake 2000 --preset resnet --workers 2 --shards

The reference is the classic pipeline: Pillow decode → the preset's crop and flip → ToTensor →
PCA lighting → Normalize, one image at a time in the workers. Ours ships uint8 crops and leaves
the float work to the accelerator; "ours + CPU normalise" also runs that work on this CPU, in
the main process, to show what it would cost without an accelerator. ``--shards`` first
converts the same files into litdata shards (make_shards' item format, timed: the conversion
cost) and adds our pipeline reading them through litdata's StreamingDataLoader (imagenet_shards).

Per core = images / CPU seconds of the main process and its persistent workers (getrusage and
/proc, so Linux), over epochs after the first: the figure holds on a busy machine where wall
time does not.
"""

from __future__ import annotations

import math
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from litdata import StreamingDataLoader
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from classicnets.data.fake import make_fake_imagenet
from classicnets.data.folder import FileIndex, ImageFolderDataset, SkipCollate, find_classes
from classicnets.data.presets import make_train_preset
from classicnets.data.shards import ShardImages
from classicnets.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PCA_EIGVAL,
    PCA_EIGVEC,
    DeviceAugment,
)
from classicnets.run.errors import ArgumentParser


class Lighting:
    """AlexNet PCA lighting on one float image, as the classic PyTorch ImageNet scripts do it."""

    def __init__(self, std: float = 0.1) -> None:
        self.std, self.eigval, self.eigvec = std, torch.tensor(PCA_EIGVAL), torch.tensor(PCA_EIGVEC)

    def __call__(self, image: Tensor) -> Tensor:
        alpha = torch.randn(3) * self.std
        rgb = (self.eigvec * alpha.view(1, 3) * self.eigval.view(1, 3)).sum(1)
        return image + rgb.view(3, 1, 1)


class RandomShorterSide:
    """Resize the shorter side to S ~ U[low, high] (VGG and ResNet scale augmentation)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        return TF.resize(image, random.randint(self.low, self.high))


def reference_transform(preset: str, size: int = 224) -> Callable[[Image.Image], Tensor]:
    """The same augmentation as our preset, written the classic torchvision way."""
    normalize = [T.ToTensor(), Lighting(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    flip = T.RandomHorizontalFlip()
    if preset == "alexnet":
        geometry = [T.Resize(256), T.CenterCrop(256), T.RandomCrop(size), flip]
    elif preset in ("vgg", "resnet"):
        high = 512 if preset == "vgg" else 480
        geometry = [RandomShorterSide(256, high), T.RandomCrop(size), flip]
    elif preset == "googlenet":
        modes = [T.InterpolationMode.BILINEAR, T.InterpolationMode.BOX]
        modes += [T.InterpolationMode.NEAREST, T.InterpolationMode.BICUBIC]
        crops = [T.RandomResizedCrop(size, interpolation=m) for m in modes]
        geometry = [T.RandomChoice(crops), flip, T.ColorJitter(0.125, 0.5, 0.5, 0.2)]
        normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    elif preset == "torchvision":
        geometry = [T.RandomResizedCrop(size), flip]
        normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    else:
        raise ValueError(preset)
    return T.Compose(geometry + normalize)


class ReferenceDataset(Dataset):
    """torchvision's ImageFolder loading (Pillow, convert to RGB) over the same file index."""

    def __init__(self, index: FileIndex, transform: Callable[[Image.Image], Tensor]) -> None:
        self.index, self.transform = index, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        with open(self.index.path(i), "rb") as f:
            image = Image.open(f).convert("RGB")
        return self.transform(image), int(self.index.targets[i])


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of this process and of the given live processes (Linux /proc)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def child_pids() -> list[int]:
    """This process's live child processes (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # the process has exited meanwhile
            continue
        if parent == os.getpid():
            children.append(int(stat.parent.name))
    return children


def run(
    loader: DataLoader, post: Callable[[Tensor], Tensor] | None = None
) -> tuple[int, float, float]:
    """One epoch: (images, wall seconds, CPU seconds). The persistent workers of the previous
    epoch are counted from before this one asks them for anything (the first epoch is warm-up)."""
    pids = child_pids()  # the loader's persistent workers, once it has started them
    cpu, wall, count = cpu_seconds(pids), time.perf_counter(), 0
    for images, _ in loader:
        if post is not None:
            images = post(images)
        count += images.shape[0]
    return count, time.perf_counter() - wall, cpu_seconds(pids) - cpu


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", type=Path, help="an ImageFolder tree (reads root/train)")
    source.add_argument("--fake", type=int, metavar="N", help="generate N fake 500×375 JPEGs")
    parser.add_argument("--preset", default="alexnet")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="use the first N files only")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept")
    parser.add_argument("--shards", action="store_true", help="also stream the files as shards")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one core per process, as in the workers

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            classes = 10
            root = make_fake_imagenet(tmp, classes, math.ceil(args.fake / classes), 0, seed=0)
        train = root / "train"
        index = FileIndex.scan(train, find_classes(train))
        if args.limit:
            index = _head(index, args.limit)
        preset = make_train_preset(args.preset, input_size=224)
        ours = ImageFolderDataset(index, preset.transform, replace_bad=True)
        reference = ReferenceDataset(index, reference_transform(args.preset))
        augment = DeviceAugment(photometric=preset.photometric, channels_last=True)

        def loader(dataset: Dataset, collate: Callable | None = None) -> DataLoader:
            return DataLoader(
                dataset,
                batch_size=args.batch_size,
                shuffle=True,
                num_workers=args.workers,
                persistent_workers=args.workers > 0,  # worker start-up is not the pipeline's cost
                collate_fn=collate,
            )

        pipelines = {
            "torchvision reference": (loader(reference), None),
            "ours (uint8 loader)": (loader(ours, SkipCollate((3, 224, 224))), None),
            "ours + CPU normalise": (
                loader(ours, SkipCollate((3, 224, 224))),
                lambda x: augment(x, train=True),
            ),
        }
        if args.shards:
            shards, conversion = convert(index, Path(tmp) / "shards", max(args.workers, 1))
            dataset = ShardImages(str(shards), preset.transform, len(index), shuffle=True)
            pipelines["ours, litdata shards"] = (
                StreamingDataLoader(
                    dataset,
                    batch_size=args.batch_size,
                    num_workers=args.workers,
                    persistent_workers=args.workers > 0,
                    collate_fn=SkipCollate((3, 224, 224)),
                ),
                None,
            )
        for dl, post in pipelines.values():  # warm the page cache and the code paths
            run(dl, post)
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeats):  # interleaved, so background load hits all alike
            for name, (dl, post) in pipelines.items():
                n, wall, cpu = run(dl, post)
                per_core, per_wall = n / cpu, n / wall
                old = best.get(name, (0.0, 0.0))
                best[name] = (max(old[0], per_core), max(old[1], per_wall))

    print(
        f"{len(index)} images from {args.root or 'fake 500×375 JPEGs'}, preset {args.preset}, "
        f"{args.workers} worker(s), batch {args.batch_size}, best of {args.repeats}"
    )
    print(f"{'pipeline':24s} {'images/s per core':>18s} {'images/s (wall)':>16s}")
    for name, (per_core, per_wall) in best.items():
        print(f"{name:24s} {per_core:18.1f} {per_wall:16.1f}")
    ref = best["torchvision reference"][0]
    for name in ("ours (uint8 loader)", "ours + CPU normalise"):
        print(f"ratio per core, {name} / reference: {best[name][0] / ref:.2f}×")
    if args.shards:
        shards, folders = best["ours, litdata shards"], best["ours (uint8 loader)"]
        print(f"ratio per core, shards / folders: {shards[0] / folders[0]:.2f}×")
        print(f"ratio wall, shards / folders: {shards[1] / folders[1]:.2f}×")
        print(
            f"conversion: {len(index)} files in {conversion:.1f} s "
            f"({len(index) / conversion:.0f} files/s, {max(args.workers, 1)} worker(s))"
        )


def convert(index: FileIndex, out: Path, workers: int) -> tuple[Path, float]:
    """The index's files as litdata shards, as make_shards writes them; (folder, seconds)."""
    from make_shards import CHUNK_BYTES, write_shards

    entries = [
        (index.path(i), int(index.targets[i]), os.path.relpath(index.path(i), index.directory))
        for i in range(len(index))
    ]
    return out, write_shards(entries, str(out), CHUNK_BYTES, workers, verbose=False)


def _head(index: FileIndex, n: int) -> FileIndex:
    """The first n files of an index, spread over classes by a fixed random choice."""
    keep = np.sort(np.random.default_rng(0).permutation(len(index))[:n])
    names = [index.names[index.offsets[i] : index.offsets[i + 1]].tobytes() for i in keep]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in names])]).astype(np.int64)
    blob = np.frombuffer(b"".join(names), dtype=np.uint8).copy()
    return FileIndex(index.directory, index.classes, blob, offsets, index.targets[keep])


if __name__ == "__main__":
    main()
