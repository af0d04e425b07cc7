"""The reproduction report: our error beside the paper's, for every run under the folders given.

    python scripts/report.py logs/train                 # every run and sweep job below
    python scripts/report.py logs/train --csv report.csv

One row per setting (model, its switches, test set, protocol, and the training and test scales):
the seeds, our top-1 / top-5 error as mean ± std over seeds, the paper's figure for the same
setting with its source (classicnets.study.paper_results) and the difference, or "no paper
figure for this setting". A run is a folder with ``.hydra/config.yaml``; one without a final
``metrics.json`` with test metrics stopped early: it is counted in its row, never averaged in.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from classicnets.run.allowlist import ForeignTargetError
from classicnets.run.errors import ArgumentParser
from classicnets.study.paper_results import NO_PAPER_FIGURE, Setting, headline, paper_result
from classicnets.study.run_results import Run, find_runs

COLUMNS = (
    "model", "protocol", "test set", "setting", "seeds", "top-1 err %", "top-5 err %",
    "paper top-1", "paper top-5", "Δ top-1", "Δ top-5", "paper source", "stopped early",
)  # fmt: skip


def mean_std(values: Sequence[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _difference(ours: Sequence[float], paper: float | None) -> str:
    return "—" if not ours or paper is None else f"{statistics.mean(ours) - paper:+.2f}"


def describe(setting: Setting) -> str:
    """A setting, short: the network switches that differ from the model's first paper row (its
    recipe's, where the paper has one), and the scales: ``shortcut=B S=[256, 256] Q=[256]``."""
    first = headline(setting.model)
    usual = first.setting.net if first else {}
    net = {k: v for k, v in setting.net.items() if k not in usual or usual[k] != v}
    names = {"train_scale": "S", "test_scales": "Q", "distortions": "distortions"}
    data = {names[k]: v for k, v in setting.data.items() if k in names and v is not None}
    return " ".join(f"{k}={v}" for k, v in {**net, **data}.items())


def _key(setting: Setting) -> tuple[str, ...]:
    switches = json.dumps(setting.net, sort_keys=True), json.dumps(setting.data, sort_keys=True)
    return (setting.model, setting.protocol, setting.test_set, *switches)


def report_rows(runs: Sequence[Run]) -> list[dict[str, str]]:
    """One row per setting, sorted by model, protocol and test set."""
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[_key(run.setting)].append(run)
    rows = []
    for _, group in sorted(groups.items()):
        setting = group[0].setting
        done = [r for r in group if r.top1_error is not None]
        top1 = [r.top1_error for r in done]
        top5 = [r.top5_error for r in done if r.top5_error is not None]
        paper = paper_result(setting)
        values = (
            setting.model,
            setting.protocol,
            setting.test_set,
            describe(setting),
            ", ".join(str(r.seed) for r in done) or "—",
            mean_std(top1),
            mean_std(top5),
            _number(paper and paper.top1),
            _number(paper and paper.top5),
            _difference(top1, paper and paper.top1),
            _difference(top5, paper and paper.top5),
            f"{paper.source} ({paper.status})" if paper else NO_PAPER_FIGURE,
            str(len(group) - len(done)) if len(done) < len(group) else "",
        )
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def markdown(rows: Sequence[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run or sweep folders to search")
    parser.add_argument("--csv", type=Path, help="also write the table here (default: none)")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        return fail(f"no such folder: {', '.join(missing)}; pass run folders, e.g. logs/train")
    try:
        runs = find_runs(args.folders)
    except ForeignTargetError as error:
        return fail(str(error))
    if not runs:
        where = ", ".join(map(str, args.folders))
        return fail(f"no training runs (.hydra/config.yaml) under {where}; pass run folders")
    rows = report_rows(runs)
    print(markdown(rows))
    stopped = [r for r in runs if r.top1_error is None]
    if stopped:
        print(f"\nstopped early (not averaged): {', '.join(str(r.directory) for r in stopped)}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nwritten to {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
