"""Per-layer table of a network (output shape, activation memory, parameters, multiply-adds), or one
line per registered network against its paper's figures.

    python scripts/model_table.py model=alexnet            # the network of a Hydra model config
    python scripts/model_table.py model=vgg16 data.input_size=256
    python scripts/model_table.py --name googlenet         # a registry name, paper input size
    python scripts/model_table.py --all                    # every network, as its recipe builds it
    python scripts/model_table.py --all "vgg*"             # those matching a wildcard
    python scripts/model_table.py --plot chart.png         # accuracy against multiply-adds
    python scripts/model_table.py --plot chart.png --runs logs/train   # ours beside the papers'

Networks are built on the meta device, so nothing is initialised or computed: the table of VGG-19
takes a second. MACs are FlopCounterMode's FLOPs / 2 (convolutions and matrix products) for one
image; activation memory is the float32 output of each layer for one image.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from classicnets.models import get_model, list_models, model_info
from classicnets.run.allowlist import ForeignTargetError
from classicnets.run.errors import ArgumentParser, positive
from classicnets.run.setup import CONF_DIR
from classicnets.study.paper_results import headline, matches
from classicnets.study.run_results import find_runs


@dataclass(frozen=True)
class LayerRow:
    """One leaf module's call: what it produced and what it cost, for one image."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    activation_bytes: int
    params: int
    macs: int


def build(name: str, **kwargs: Any) -> nn.Module:
    """The registered network on the meta device (no memory, no init); on the CPU if a builder
    needs real tensors."""
    try:
        with torch.device("meta"):
            model = get_model(name, **kwargs)
    except (NotImplementedError, RuntimeError):
        model = get_model(name, **kwargs)
    return model.eval()


def input_channels(model: nn.Module) -> int:
    """Channels the network reads: those of its first convolution (3 if it has none)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def layer_rows(model: nn.Module, input_size: int) -> tuple[list[LayerRow], int]:
    """Forward one image through ``model`` recording every leaf module call; returns the rows and
    the network's total multiply-adds."""
    calls: list[tuple[str, nn.Module, torch.Size, int]] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, _: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and not isinstance(module, nn.Identity):
            size = output.numel() * output.element_size()
            calls.append((names[module], module, output.shape[1:], size))

    # Leaves, and any module holding parameters of its own (LeNet's subsampling coefficients).
    hooked = [
        m
        for m in model.modules()
        if not list(m.children()) or next(m.parameters(recurse=False), None) is not None
    ]
    handles = [m.register_forward_hook(record) for m in hooked]
    x = torch.zeros(1, input_channels(model), input_size, input_size, device=_device(model))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()

    # FlopCounterMode keys are "<root class>.<module path>"; a module called twice is charged its
    # parameters and MACs on its first row only.
    prefix = type(model).__name__ + "."
    flops = {k.removeprefix(prefix): sum(v.values()) for k, v in counter.get_flop_counts().items()}
    rows, seen = [], set()
    for name, module, shape, size in calls:
        first = name not in seen
        seen.add(name)
        params = sum(p.numel() for p in module.parameters(recurse=False)) if first else 0
        macs = flops.get(name, 0) // 2 if first else 0
        rows.append(LayerRow(name, type(module).__name__, tuple(shape), size, params, macs))
    return rows, counter.get_total_flops() // 2


def _gmacs(macs: float) -> str:
    return f"{macs / 1e9:.3f}" if macs >= 1e7 else f"{macs / 1e9:.2e}"


def print_layer_table(model: nn.Module, title: str, input_size: int, console: Console) -> None:
    """The per-layer table. Parameters are those the eval forward uses; modules that only train
    (GoogLeNet's auxiliary heads) are counted apart, below the table."""
    rows, total_macs = layer_rows(model, input_size)
    table = Table(title=f"{title} at {input_size}×{input_size}, one image", show_footer=True)
    used_params = sum(r.params for r in rows)
    total_bytes = sum(r.activation_bytes for r in rows)
    table.add_column("layer", footer="total")
    table.add_column("type")
    table.add_column("output", justify="right")
    table.add_column("activations (KiB)", justify="right", footer=f"{total_bytes / 1024:,.0f}")
    table.add_column("params", justify="right", footer=f"{used_params:,}")
    table.add_column("MACs", justify="right", footer=f"{total_macs:,}")
    table.add_column("% MACs", justify="right", footer="100.0")
    for r in rows:
        table.add_row(
            r.name,
            r.kind,
            "×".join(map(str, r.output_shape)),
            f"{r.activation_bytes / 1024:,.0f}",
            f"{r.params:,}" if r.params else "",
            f"{r.macs:,}" if r.macs else "",
            f"{100 * r.macs / total_macs:.1f}" if r.macs else "",
        )
    console.print(table)
    held = sum(p.numel() for p in model.parameters())
    extra = f" (+{held - used_params:,} used only in training)" if held != used_params else ""
    console.print(f"params {used_params:,}{extra}   GMACs {_gmacs(total_macs)}")


def recipe_networks(names: Sequence[str]) -> dict[str, tuple[dict[str, Any], int]]:
    """For each name with a recipe (``conf/model/<name>.yaml``): the network switches and input
    size that ``model=<name>`` trains with (ResNet-50 as v1, not the builder's v1.5)."""
    from hydra import compose, initialize_config_dir

    found = {}
    recipes = [n for n in names if (CONF_DIR / "model" / f"{n}.yaml").is_file()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in recipes:
            cfg = compose("train", overrides=[f"model={name}"])
            net = {k: v for k, v in cfg.model.net.items() if k != "name"}
            size = cfg.data.get("input_size") or model_info(name).input_size
            found[name] = (net, int(size))
    return found


def print_all(console: Console, pattern: str = "*") -> None:
    """One line per registered network matching ``pattern``, built as its recipe trains it (the
    builder's defaults where it has no recipe): ours beside the paper's figures."""
    table = Table(title="Registered networks as their recipes build them, one image (eval mode)")
    columns = (
        "model",
        "built as",
        "input",
        "params",
        "paper params",
        "GMACs",
        "paper GMACs",
        "paper",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in columns[2:-1] else "left")
    names = list_models(pattern)
    recipes = recipe_networks(names)
    for name in names:
        info = model_info(name)
        net, size = recipes.get(name, ({}, info.input_size))
        rows, macs = layer_rows(build(name, **net), size)
        table.add_row(
            name,
            f"model={name}" if name in recipes else "builder defaults",
            str(size),
            f"{sum(r.params for r in rows):,}",
            f"{info.paper_params:,}" if info.paper_params else "—",
            _gmacs(macs),
            f"{info.paper_macs:.3f}" if info.paper_macs else "—",
            info.paper,
        )
    console.print(table)


def plot_complexity(out: Path, run_folders: Sequence[Path] = (), pattern: str = "*") -> list[str]:
    """The course's chart: top-1 accuracy against multiply-adds (each network as its recipe builds
    it), bubble area = parameters; each paper's first figure
    (classicnets.study.paper_results.headline) filled, ours (mean over the runs under
    ``run_folders`` in that figure's setting) hollow beside it. Returns the models without a
    paper top-1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = _our_top1_errors(run_folders)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    missing = []
    names = list_models(pattern)
    recipes = recipe_networks(names)
    for name in names:
        paper = headline(name)
        if paper is None or paper.top1 is None or paper.protocol == "mnist":
            missing.append(name)
            continue
        net, input_size = recipes.get(name, ({}, model_info(name).input_size))
        rows, macs = layer_rows(build(name, **net), input_size)
        params = sum(r.params for r in rows)
        size = params / 1e6 * 6  # points²: 6 per million parameters
        ax.scatter(macs / 1e9, 100 - paper.top1, s=size, alpha=0.45)
        ax.annotate(name, (macs / 1e9, 100 - paper.top1), fontsize=7, ha="center", va="bottom")
        if name in ours:
            ax.scatter(macs / 1e9, 100 - ours[name], s=size, facecolors="none", edgecolors="k")
    ax.set_xscale("log")
    ax.set_xlabel("multiply-adds per image (G, log scale, at the paper's input size)")
    ax.set_ylabel("top-1 accuracy (%), ImageNet val")
    ax.set_title("Accuracy against compute; bubble area ∝ parameters (filled: paper, hollow: ours)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return missing


def _our_top1_errors(folders: Sequence[Path]) -> dict[str, float]:
    """Our mean top-1 error per model over the finished runs under ``folders`` that measured
    what the paper's plotted figure did (``headline``)."""
    errors: dict[str, list[float]] = {}
    for run in find_runs(list(folders)):
        paper = headline(run.model)
        if run.top1_error is not None and paper and matches(paper.setting, run.setting):
            errors.setdefault(run.model, []).append(run.top1_error)
    return {name: sum(e) / len(e) for name, e in errors.items()}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def from_config(overrides: Sequence[str]) -> tuple[nn.Module, str, int]:
    """The network ``conf/train.yaml`` composes with these overrides, and its input size."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    net = dict(cfg.model.net)
    name = net.pop("name")
    size = cfg.data.get("input_size") or model_info(name).input_size
    return build(name, **net), name, int(size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    parser.add_argument("--name", help="a registry name instead of a config")
    parser.add_argument(
        "--input-size", type=positive, help="default: the paper's (or the config's)"
    )
    parser.add_argument(
        "--all",
        nargs="?",
        const="*",
        metavar="PATTERN",
        help="one line per registered network (matching the wildcard PATTERN)",
    )
    parser.add_argument("--plot", type=Path, metavar="PNG", help="draw the complexity chart")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="our runs, for --plot")
    args = parser.parse_args(argv)
    # Wide enough for the table when the output is a pipe or a file (rich assumes 80 columns).
    console = Console(width=None if sys.stdout.isatty() else 140)

    if args.plot:
        try:
            missing = plot_complexity(args.plot, args.runs, args.all or "*")
        except ForeignTargetError as error:  # a run directory whose config names foreign code
            print(f"error: {error}", file=sys.stderr)
            return 2
        console.print(f"chart written to {args.plot}; no paper top-1 for: {', '.join(missing)}")
        return 0
    if args.all:
        print_all(console, args.all)
        return 0
    if args.name:
        model, name = build(args.name), args.name
        size = model_info(name).input_size
    elif (CONF_DIR / "train.yaml").exists():
        model, name, size = from_config(args.overrides)
    else:
        parser.error("no conf/train.yaml: pass --name <registry name>")
    print_layer_table(model, name, args.input_size or size, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
