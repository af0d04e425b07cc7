"""scripts/gpu_check.sh at toy sizes on the CPU, and the offline install it starts with
(scripts/download_wheels.py): the wheelhouse holds what the GPU machines lack, within 60 MiB."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from run_helpers import load_script

REPO = Path(__file__).resolve().parents[1]
# What the GPU machines lack, and what they have (left out of the wheelhouse).
LACKED = (
    "hydra_core",
    "omegaconf",
    "antlr4_python3_runtime",
    "simplejpeg",
    "torchdata",
    "wandb",
    "mlxtend",
    "torchcodec",
)
HAD = ("torch", "torchvision", "lightning", "torchmetrics", "onnxruntime", "numpy", "pillow")


@pytest.mark.slow
def test_gpu_check_measures_cpu_and_gpu_decoding_at_toy_sizes(tmp_path: Path) -> None:
    pytest.importorskip("torchcodec")
    env = os.environ | {"TINY": "1", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "LEARNING": "0"}
    script = REPO / "scripts" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "everything is installed" in done.stdout
    rows = list(csv.DictReader((tmp_path / "gpu_check.csv").open()))
    assert [(r["model"], r["data"]) for r in rows] == [("alexnet", "real")] * 2
    for row in rows:
        assert float(row["images_per_s"]) > 0 and 0 <= float(row["data_wait_share"]) <= 1
        assert row["precision"] == "fp32" and row["channels_last"] == "true"  # bf16 on GPUs
    log = (tmp_path / "bench_real.log").read_text()
    assert "row failed" not in log


def test_gpu_check_refuses_in_one_line_when_packages_and_wheels_are_missing(
    tmp_path: Path,
) -> None:
    """A Python without hydra and no wheelhouse: exit 2 and what to run, before any work."""
    shim = tmp_path / "bin"
    shim.mkdir()
    # A python that cannot import hydra (an empty site), for the install check only.
    (shim / "python").write_text(f'#!/bin/sh\nexec {sys.executable} -S -I "$@"\n')
    (shim / "python").chmod(0o755)
    env = os.environ | {
        "OUT": str(tmp_path / "out"),
        "WHEELS": str(tmp_path / "none"),
        "PATH": f"{shim}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: packages are missing")
    assert "download_wheels.py download" in done.stderr


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path, list[Path]]:
    """The wheels for this Python (the same code builds them for 3.12): about a minute of pip."""
    wheels = load_script("download_wheels")
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    folder = tmp_path_factory.mktemp("wheels")
    return wheels, folder, wheels.download(folder, python, "x86_64")


@pytest.mark.slow
def test_the_wheelhouse_holds_what_the_gpu_machines_lack_within_60_mib(
    wheelhouse: tuple[ModuleType, Path, list[Path]],
) -> None:
    _, folder, made = wheelhouse
    names = {w.name.split("-")[0].lower() for w in made}
    assert set(LACKED) <= names, set(LACKED) - names
    assert not names & set(HAD) and not any(n.startswith("nvidia") for n in names)
    assert sum(w.stat().st_size for w in made) <= 60 * 2**20
    listed = (folder / "manifest.txt").read_text().split()
    assert listed == [w.name for w in made] and all((folder / n).is_file() for n in listed)


@pytest.mark.slow
def test_the_wheelhouse_installs_offline_into_a_fresh_venv(
    wheelhouse: tuple[ModuleType, Path, list[Path]], tmp_path: Path
) -> None:
    """--no-index into a venv that sees this machine's PyTorch: the packages import from it."""
    wheels, folder, _ = wheelhouse
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    wheels.install(folder, str(venv / "bin" / "python"))
    probe = "import hydra, omegaconf, simplejpeg, torchdata, torchcodec, wandb, mlxtend.data; "
    probe += "print(hydra.__file__, torchcodec.__file__)"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    assert all(path.startswith(str(venv)) for path in done.stdout.split())
