"""Write a small ImageNet-layout tree of real JPEGs (see ``classicnets.data.fake``).

    python scripts/make_fake_imagenet.py data/fake_imagenet --classes 10 --train 20 --val 5
    python src/train.py model=alexnet data.root=data/fake_imagenet

Importable too: ``from make_fake_imagenet import make_fake_imagenet``.
"""

from __future__ import annotations

import time

from classicnets.data.fake import make_fake_imagenet
from classicnets.run.errors import ArgumentParser, non_negative, positive

__all__ = ["make_fake_imagenet"]


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="output folder; train/ and val/ are written inside")
    parser.add_argument("--classes", type=positive, default=10)
    parser.add_argument("--train", type=positive, default=20, help="training images per class")
    parser.add_argument("--val", type=non_negative, default=5, help="validation images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad-files", action="store_true", help="add broken and odd files")
    parser.add_argument("--size", type=positive, nargs=2, default=(500, 375), metavar=("W", "H"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = make_fake_imagenet(
        args.root, args.classes, args.train, args.val, args.seed, args.bad_files, tuple(args.size)
    )
    count = args.classes * (args.train + args.val)
    print(f"wrote {count} images to {root} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
