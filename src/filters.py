"""Draw a network's first-layer kernels (AlexNet Figure 3, ZFNet's layer-1 filters) and say how
colour-specific each GPU group's kernels are.

python src/filters.py ckpt_path=CKPT                     # conv1, into logs/filters/runs/<time>/
python src/filters.py ckpt_path=CKPT layer=features.conv1 logger=wandb

AlexNet's 96 11×11×3 kernels come out as two blocks of 48, as the paper prints them: the halves
that conv2's two groups (the paper's two GPUs) read.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from PIL import Image

from classicnets.run import checkpoints, setup
from classicnets.run.errors import hydra_main
from classicnets.study import rebuild
from classicnets.study.filters import KernelFigure


@hydra_main(config_path="../conf", config_name="filters")
def main(cfg: DictConfig) -> Path:
    """Draw ``cfg.layer`` of ``cfg.ckpt_path`` into the run directory; returns the PNG."""
    run_dir = setup.output_dir()
    net = rebuild.restore_model(checkpoints.load_checkpoint(cfg.ckpt_path)).net
    figure = KernelFigure.of(net, cfg.layer)
    out = run_dir / f"filters_{figure.name.replace('.', '_')}.png"
    Image.fromarray(figure.grid).save(out)
    size = "×".join(map(str, figure.conv.weight.shape[1:][::-1]))
    print(
        f"{figure.name}: {figure.conv.out_channels} kernels of {size}, in {figure.groups} "
        f"group(s); drawn to {out}"
    )
    for i, score in enumerate(figure.specificity, start=1):
        print(f"group {i} (GPU {i}): colour specificity {score:.3f}  (0 = grey, higher = colour)")
    rebuild.log_figure(cfg.get("logger"), run_dir, f"filters/{figure.name}", out)
    return out


if __name__ == "__main__":
    main()
