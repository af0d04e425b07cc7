"""Lightning's private names are touched in one module, which fails loudly when they change."""

from __future__ import annotations

import importlib

import lightning
import pytest
from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher

from classicnets import compat, launch
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
