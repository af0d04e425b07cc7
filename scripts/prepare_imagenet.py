"""Turn the official ILSVRC2012 archives into the folder tree ``ImageNetDataModule`` reads.

    python scripts/prepare_imagenet.py --archives ~/Downloads/ilsvrc2012 --out data/imagenet
    python src/train.py model=alexnet data.root=data/imagenet

Reads, from ``--archives`` (or the paths given one by one):
  ILSVRC2012_devkit_t12.tar.gz  class names and validation labels, parsed (and md5-checked) by
                                torchvision's own ImageNet helpers;
  ILSVRC2012_img_train.tar      a tar of 1,000 per-class tars (1,281,167 images);
  ILSVRC2012_img_val.tar        50,000 images in one folder.
Writes ``out/train/<wnid>/*.JPEG``, ``out/val/<wnid>/*.JPEG`` and ``out/synsets.txt`` (one
"<wnid> <names>" line per class, read by the DataModule for human-readable class names).
Each archive is streamed once, with no temporary copy, so the disk needs the extracted size
(~147 GB) beside the archives. Files already extracted with the right size are skipped, so an
interrupted run can simply be started again.
"""

from __future__ import annotations

import re
import tarfile
import time
from pathlib import Path

from torchvision.datasets.imagenet import ARCHIVE_META, load_meta_file, parse_devkit_archive

from classicnets.run.errors import ArgumentParser

VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG$")


def read_devkit(devkit: Path, out: Path) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """(class names per wnid for the 1,000 classes, the wnid of each validation image in order)."""
    out.mkdir(parents=True, exist_ok=True)
    # torchvision checks the archive's md5, parses meta.mat and the ground truth, and caches the
    # result as out/meta.bin; an absolute `file` makes it read the archive where it lies.
    parse_devkit_archive(str(out), str(devkit.resolve()))
    return load_meta_file(str(out))


def write_synsets(out: Path, wnid_to_classes: dict[str, tuple[str, ...]]) -> None:
    lines = [f"{wnid} {', '.join(names)}" for wnid, names in sorted(wnid_to_classes.items())]
    (out / "synsets.txt").write_text("\n".join(lines) + "\n")


def extract_train(train_tar: Path, out: Path, wnids: set[str]) -> int:
    """Stream the tar of per-class tars into out/train/<wnid>/; returns the number of images."""
    count = 0
    with tarfile.open(train_tar, mode="r|") as outer:
        for n, member in enumerate(outer, 1):
            wnid = Path(member.name).stem
            if not member.isfile() or wnid not in wnids:
                raise ValueError(f"{train_tar}: unexpected member {member.name!r}")
            folder = out / "train" / wnid
            folder.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                count += sum(_write(inner, m, folder) for m in inner)
            if n % 50 == 0:
                print(f"  train: {n} classes, {count} images")
    return count


def extract_val(val_tar: Path, out: Path, val_wnids: list[str]) -> int:
    """Stream the flat validation tar into out/val/<wnid>/; image k has label val_wnids[k - 1]."""
    count = 0
    with tarfile.open(val_tar, mode="r|") as tar:
        for member in tar:
            match = VAL_NAME.search(member.name)
            if not member.isfile() or match is None:
                raise ValueError(f"{val_tar}: unexpected member {member.name!r}")
            folder = out / "val" / val_wnids[int(match.group(1)) - 1]
            folder.mkdir(parents=True, exist_ok=True)
            count += _write(tar, member, folder)
            if count % 10000 == 0:
                print(f"  val: {count} images")
    return count


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path) -> int:
    """Write one regular member into folder under its base name (never outside it)."""
    if not member.isfile():
        return 0
    target = folder / Path(member.name).name
    if not (target.is_file() and target.stat().st_size == member.size):
        target.write_bytes(tar.extractfile(member).read())
    return 1


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archives", type=Path, default=Path("."), help="folder of the 3 archives")
    parser.add_argument("--out", type=Path, required=True, help="the dataset root to write")
    parser.add_argument(
        "--devkit", type=Path, help=f"default: ARCHIVES/{ARCHIVE_META['devkit'][0]}"
    )
    parser.add_argument(
        "--train-tar", type=Path, help=f"default: ARCHIVES/{ARCHIVE_META['train'][0]}"
    )
    parser.add_argument("--val-tar", type=Path, help=f"default: ARCHIVES/{ARCHIVE_META['val'][0]}")
    parser.add_argument("--skip-train", action="store_true", help="only the devkit and val")
    args = parser.parse_args(argv)
    devkit = args.devkit or args.archives / ARCHIVE_META["devkit"][0]
    train_tar = args.train_tar or args.archives / ARCHIVE_META["train"][0]
    val_tar = args.val_tar or args.archives / ARCHIVE_META["val"][0]
    needed = [devkit, val_tar] + ([] if args.skip_train else [train_tar])
    if missing := [str(p) for p in needed if not p.is_file()]:
        parser.error(f"missing archives: {', '.join(missing)} (download them from image-net.org)")

    start = time.perf_counter()
    wnid_to_classes, val_wnids = read_devkit(devkit, args.out)
    write_synsets(args.out, wnid_to_classes)
    print(f"devkit: {len(wnid_to_classes)} classes, {len(val_wnids)} validation labels")
    val = extract_val(val_tar, args.out, val_wnids)
    train = 0 if args.skip_train else extract_train(train_tar, args.out, set(wnid_to_classes))
    print(
        f"wrote {train} training and {val} validation images to {args.out} "
        f"in {(time.perf_counter() - start) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
