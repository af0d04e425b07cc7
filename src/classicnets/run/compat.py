"""Every place classicnets reaches into a library's private names (Lightning's, torch's), in one
module.

Lightning's fit loop restores a stateful train loader's position (mid-epoch resume) only when it
builds the loader after the checkpoint is loaded. A module whose ``configure_optimizers`` asks for
``trainer.estimated_stepping_batches`` (our LR warm-up) has the loader built before, and the
position would be dropped: :func:`restore_train_loader_position` applies it at train start.

Lightning's plain ``ddp`` launcher has two module-level hooks and no public way to change them:
the command that starts ranks 1… under Hydra (``_hydra_subprocess_cmd``, which repeats the whole
command line, sweeps included) and the thread that watches those ranks
(``_launch_process_observer``, which SIGKILLs every process, saying nothing useful, when one
exits). :mod:`classicnets.run.launch` replaces both through :func:`replace_launcher_hooks`.

Several optimizer updates in one training step (``model.updates_per_step``, LeNet-5's per-pattern
recipe) each go through ``LightningOptimizer.step``, whose precision-plugin closure calls every
callback's ``on_before_optimizer_step`` (~0.13 ms an update with a run's 14 callbacks, a tenth
of a LeNet-5 update): :func:`counted_step` takes the step the way it does, counted in
``global_step`` and timed by the profiler, and calls only the hooks that do something.

A single-device strategy has no public cluster environment (SLURM's requeue settings):
:func:`cluster_environment` reads the one the Trainer's private accelerator connector detected.

Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` keeps its averaged model in a
private attribute and has no public way to ask whether anything has been averaged yet (GoogLeNet's
Polyak average starts late): :func:`averaged_model` reads it.

torch has no public base class of its batch and instance norms (:data:`NORM_LAYERS`, the layers
spared weight decay as "norm"), and no public fused multi-tensor ``addcdiv``
(:func:`foreach_addcdiv_`, SDLM's update: per pattern, ten per-tensor ops cost more than the math).

Hydra's command line has no public parser: :func:`hydra_unknown_flags` asks the one
``hydra.main`` uses (``hydra._internal.utils.get_args_parser``) which arguments it would refuse, so
that a misspelt flag is one ``error:`` line like every other bad input, not argparse's usage block.

Importing this module checks that each name still exists where it is used, so that a release
that renames one fails at once, naming it and the versions involved, instead of silently running
the library's own hook. ``pyproject.toml`` pins the minor version of Lightning the tests ran with
(:data:`TESTED_LIGHTNING`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from types import ModuleType

import lightning
import torch
from hydra._internal import utils as hydra_utils
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins.environments import ClusterEnvironment
from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loops import fit_loop
from lightning.pytorch.loops.optimization import manual
from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher
from torch import Tensor, nn
from torch.nn.modules import batchnorm
from torch.optim.swa_utils import AveragedModel

TESTED_LIGHTNING = "2.6"
# (module, private name): the Fabric launcher defines each hook, the PyTorch one imports it.
LAUNCHER_HOOKS: tuple[tuple[ModuleType, str], ...] = tuple(
    (module, name)
    for module in (pytorch_launcher, fabric_launcher)
    for name in ("_hydra_subprocess_cmd", "_launch_process_observer")
)
# Every private name used here: the hooks replaced, and what the loader-position fix calls.
PATCHED = (
    *LAUNCHER_HOOKS,
    (fit_loop._FitLoop, "_load_combined_loader_states"),
    # what LightningOptimizer.step calls around the step under manual optimisation
    (manual._ManualOptimization, "_on_before_step"),
    (manual._ManualOptimization, "_on_after_step"),
    # an instance attribute: looked for on a fresh callback (see the check below)
    (WeightAveraging, "_average_model"),
)
# Every private torch name used here.
TORCH_PRIVATE = ((batchnorm, "_NormBase"), (torch, "_foreach_addcdiv_"))
# Every private Hydra name used here.
HYDRA_PRIVATE = ((hydra_utils, "get_args_parser"),)


class LibraryChangedError(ImportError):
    """A private name of a library that classicnets uses is gone."""


class LightningChangedError(LibraryChangedError):
    """A private Lightning name that classicnets patches is gone."""


def check(patched: tuple[tuple[object, str], ...] = PATCHED) -> None:
    """Fail loudly when a patched name is missing (a Lightning release renamed it)."""
    missing = _first_missing(patched)
    if missing:
        raise LightningChangedError(
            f"{missing} does not exist in Lightning {lightning.__version__}; classicnets patches "
            f"it (classicnets/run/compat.py) and was tested with Lightning {TESTED_LIGHTNING}.x: "
            f"install lightning~={TESTED_LIGHTNING}.0 or update compat.py"
        )


def check_torch(private: tuple[tuple[object, str], ...] = TORCH_PRIVATE) -> None:
    """Fail loudly when a private torch name used here is missing (a torch release renamed it)."""
    missing = _first_missing(private)
    if missing:
        raise LibraryChangedError(
            f"{missing} does not exist in torch {torch.__version__}; classicnets uses it "
            "(classicnets/run/compat.py): install the torch version pyproject.toml names or "
            "update compat.py"
        )


def check_hydra(private: tuple[tuple[object, str], ...] = HYDRA_PRIVATE) -> None:
    """Fail loudly when a private Hydra name used here is missing."""
    missing = _first_missing(private)
    if missing:
        raise LibraryChangedError(
            f"{missing} does not exist in this Hydra release; classicnets uses it "
            "(classicnets/run/compat.py): install the hydra-core pyproject.toml names"
        )


def hydra_unknown_flags(argv: Sequence[str]) -> list[str]:
    """The arguments of ``argv`` that ``hydra.main``'s own parser would refuse (``--bogus``)."""
    _, unknown = hydra_utils.get_args_parser().parse_known_args(list(argv))
    return unknown


def _first_missing(names: tuple[tuple[object, str], ...]) -> str | None:
    """``owner.name`` of the first of ``names`` that no longer exists, else None."""
    return next((f"{_where(o)}.{n}" for o, n in names if not _has(o, n)), None)


def _has(owner: object, name: str) -> bool:
    """``owner.name`` exists; a callback class's attribute is looked for on a fresh instance."""
    if isinstance(owner, type) and issubclass(owner, Callback):
        return hasattr(owner(), name)
    return hasattr(owner, name)


def _where(owner: object) -> str:
    return getattr(owner, "__name__", type(owner).__name__)


def replace_launcher_hooks(
    child_command: Callable[[int], tuple[list[str], str]],
    watch_children: Callable[[list], None],
) -> None:
    """Lightning's ``ddp`` launcher then starts ranks 1… with ``child_command(local_rank)``
    (command, working directory) and hands the started processes to ``watch_children``."""
    for module, name in LAUNCHER_HOOKS:
        hook = child_command if name == "_hydra_subprocess_cmd" else watch_children
        setattr(module, name, hook)


def restore_train_loader_position(trainer: Trainer) -> None:
    """Apply the checkpoint's train loader state that the fit loop held back (see above), and
    restart the loader's iterator from it; a no-op where the loop applied it itself."""
    loop = trainer.fit_loop
    for name in ("_combined_loader_states_to_load", "_data_fetcher"):
        if not hasattr(loop, name):
            check(((loop, name),))  # raises, naming it
    if loop.restarting and loop._combined_loader_states_to_load and loop._data_fetcher:
        loop._load_combined_loader_states()
        iter(loop._data_fetcher)  # the iterator was made before the state was loaded


check()
check_torch()
check_hydra()

# Every layer with per-channel norm parameters: BatchNorm*, SyncBatchNorm, InstanceNorm*
# (torch's private _NormBase), GroupNorm, LayerNorm.
NORM_LAYERS: tuple[type[nn.Module], ...] = (batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def foreach_addcdiv_(
    tensors: list[Tensor], numerators: list[Tensor], denominators: list[Tensor], value: float
) -> None:
    """``t += value * n / d`` for every tensor of a list, in one fused kernel per device."""
    torch._foreach_addcdiv_(tensors, numerators, denominators, value=value)


def averaged_model(callback: WeightAveraging) -> AveragedModel | None:
    """The callback's averaged model, None before the fit has set it up."""
    return callback._average_model


def counted_step(optimizer: LightningOptimizer, hooks: Sequence[Callable[[], None]]) -> None:
    """One optimizer step under manual optimisation, as ``optimizer.step()`` takes it (counted in
    ``trainer.global_step``, timed by the profiler) for fp32 and bf16, whose precision plugins
    only run the ``on_before_optimizer_step`` hooks before stepping: ``hooks`` are those of them
    that do something (:func:`before_step_hooks`)."""
    optimizer._on_before_step()
    for hook in hooks:
        hook()
    optimizer.optimizer.step()
    optimizer._on_after_step()


def before_step_hooks(trainer: Trainer, optimizer: LightningOptimizer) -> list[Callable[[], None]]:
    """The ``on_before_optimizer_step`` hooks of the run's callbacks and module that override
    Lightning's no-op, bound to their arguments, in the order Lightning calls them."""
    module = trainer.lightning_module
    hooks: list[Callable[[], None]] = [
        partial(callback.on_before_optimizer_step, trainer, module, optimizer)
        for callback in trainer.callbacks
        if type(callback).on_before_optimizer_step is not Callback.on_before_optimizer_step
    ]
    if type(module).on_before_optimizer_step is not LightningModule.on_before_optimizer_step:
        hooks.append(partial(module.on_before_optimizer_step, optimizer))
    return hooks


def cluster_environment(trainer: Trainer) -> ClusterEnvironment | None:
    """The run's cluster environment (SLURM's requeue settings live there). DDP strategies expose
    it publicly; a single-device strategy has none, and only the private accelerator connector
    knows the one Lightning detected."""
    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is None:
        connector = getattr(trainer, "_accelerator_connector", None)
        if connector is None:
            raise LightningChangedError(
                f"Trainer._accelerator_connector does not exist in Lightning "
                f"{lightning.__version__}; classicnets was tested with {TESTED_LIGHTNING}.x"
            )
        env = connector.cluster_environment
    return env
