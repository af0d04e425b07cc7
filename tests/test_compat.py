"""Libraries' private names are touched in one module, which fails loudly when they change."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher
from torch import nn

from classicnets.run import compat, launch
from run_helpers import REPO


def test_a_renamed_lightning_hook_fails_at_import_naming_it_and_the_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(pytorch_launcher, "_launch_process_observer")
    with pytest.raises(ImportError) as failure:  # reload makes a new LightningChangedError
        importlib.reload(compat)
    message = str(failure.value)
    assert "subprocess_script._launch_process_observer does not exist" in message
    assert f"Lightning {lightning.__version__}" in message
    assert "tested with Lightning 2.6.x" in message
    monkeypatch.undo()
    importlib.reload(compat)  # whole again


def test_the_launcher_hooks_are_ours_after_a_job_starts() -> None:
    launch.start_job()
    for module, name in compat.LAUNCHER_HOOKS:
        assert getattr(module, name) in (launch.child_command, launch.watch_children), name


def test_lightning_is_pinned_to_the_minor_version_the_tests_ran_with() -> None:
    assert lightning.__version__.startswith(f"{compat.TESTED_LIGHTNING}.")
    assert f'"lightning~={compat.TESTED_LIGHTNING}.' in (REPO / "pyproject.toml").read_text()


def test_a_renamed_private_torch_name_fails_at_import_naming_it_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(torch.nn.modules.batchnorm, "_NormBase")
    with pytest.raises(ImportError) as failure:
        importlib.reload(compat)
    assert f"batchnorm._NormBase does not exist in torch {torch.__version__}" in str(failure.value)
    monkeypatch.undo()
    importlib.reload(compat)


def test_norm_layers_are_every_layer_with_norm_parameters() -> None:
    norms = [
        nn.BatchNorm2d(4),
        nn.SyncBatchNorm(4),
        nn.InstanceNorm2d(4, affine=True),
        nn.GroupNorm(2, 4),
        nn.LayerNorm(4),
    ]
    assert all(isinstance(m, compat.NORM_LAYERS) for m in norms)
    assert not isinstance(nn.Conv2d(4, 4, 1), compat.NORM_LAYERS)


def test_fused_addcdiv_updates_every_tensor() -> None:
    weights = [torch.ones(3), torch.full((2,), 2.0)]
    compat.foreach_addcdiv_(
        weights,
        [torch.ones(3), torch.ones(2)],
        [torch.full((3,), 4.0), torch.full((2,), 2.0)],
        value=-1.0,
    )
    assert weights[0].tolist() == [0.75] * 3 and weights[1].tolist() == [1.5] * 2


def test_the_averaged_model_is_none_until_the_fit_sets_it_up() -> None:
    assert compat.averaged_model(WeightAveraging()) is None


def private_names(path: Path) -> list[str]:
    """``x._name`` (not on self or cls), ``from m import _name`` and ``getattr(x, "_name")`` in
    a file; Hydra's config keys (``_target_``, ...) are public."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Attribute):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                names = [node.attr]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ATTRIBUTE_CALLS:
            key = node.args[1] if len(node.args) > 1 else None
            names = [key.value] if isinstance(key, ast.Constant) else []
        found += [
            f"{path.relative_to(REPO)}:{node.lineno}: {name}"
            for name in names
            if isinstance(name, str) and name.startswith("_") and not is_public_underscore(name)
        ]
    return found


ATTRIBUTE_CALLS = ("getattr", "hasattr", "setattr", "delattr")
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def is_public_underscore(name: str) -> bool:
    """Python's ``__dunder__`` names and Hydra's config keys."""
    return (name.startswith("__") and name.endswith("__")) or name in HYDRA_KEYS


def test_no_private_name_of_a_library_is_used_outside_compat() -> None:
    files = [p for root in ("src", "scripts") for p in (REPO / root).rglob("*.py")]
    found = [hit for path in files if path.name != "compat.py" for hit in private_names(path)]
    assert found == []
