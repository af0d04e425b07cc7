"""Draw a network's first-layer kernels (AlexNet Figure 3, ZFNet's layer-1 filters) and say how
colour-specific each GPU group's kernels are.

    python scripts/filters.py CKPT                       # conv1, into logs/filters/runs/<time>/
    python scripts/filters.py CKPT --layer conv1 --out filters.png

AlexNet's 96 11×11×3 kernels come out as two blocks of 48, as the paper prints them: the halves
that conv2's two groups (the paper's two GPUs) read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from classicnets.errors import USER_ERRORS
from classicnets.filters import find_conv, group_specificity, kernel_grid, reading_groups
from classicnets.restore import log_image_to_wandb, restore_model, script_run_dir
from classicnets.run.checkpoints import load_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint written by src/train.py")
    parser.add_argument("--layer", help="the convolution to draw (default: the first)")
    parser.add_argument("--out", type=Path, help="the PNG (default: a run directory of its own)")
    parser.add_argument("--wandb", action="store_true", help="also log the figure to W&B")
    args = parser.parse_args(argv)
    try:
        net = restore_model(load_checkpoint(args.ckpt), source=args.ckpt).net
        name, conv = find_conv(net, args.layer)
    except (*USER_ERRORS, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    groups = reading_groups(net, conv)
    out = args.out or script_run_dir("filters") / f"filters_{name.replace('.', '_')}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(kernel_grid(conv.weight, groups)).save(out)
    if args.wandb:
        log_image_to_wandb(out, f"filters/{name}", out.parent)
    size = "×".join(map(str, conv.weight.shape[1:][::-1]))
    print(f"{name}: {conv.out_channels} kernels of {size}, in {groups} group(s); drawn to {out}")
    for i, score in enumerate(group_specificity(conv.weight, groups), start=1):
        print(f"group {i} (GPU {i}): colour specificity {score:.3f}  (0 = grey, higher = colour)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
