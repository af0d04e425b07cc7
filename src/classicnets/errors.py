"""Bad input ends with one line that says what to do, not a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

from classicnets.checks import ConfigValueError
from classicnets.data.common import ClassMismatchError, DatasetNotFoundError
from classicnets.launch import RankDiedError, sweep_id
from classicnets.models.init_from import InitFromError
from classicnets.models.registry import UnknownModelError
from classicnets.resume import DiskFullError
from classicnets.run.allowlist import ForeignTargetError
from classicnets.safe_load import CorruptCheckpointError, HashMismatchError, UnsafeCheckpointError

log = logging.getLogger("classicnets")

T = TypeVar("T")


USER_ERRORS = (
    ConfigValueError,
    DiskFullError,
    RankDiedError,
    DatasetNotFoundError,
    ClassMismatchError,
    UnknownModelError,
    InitFromError,
    FileNotFoundError,
    UnsafeCheckpointError,
    CorruptCheckpointError,
    HashMismatchError,
    ForeignTargetError,
    FloatingPointError,  # a loss, weights or a metric that went NaN: run/finite.py, module.py
)


def _user_error(err: BaseException) -> BaseException | None:
    """The user-facing cause of ``err`` (Hydra wraps errors raised while instantiating)."""
    while err is not None:
        if isinstance(err, USER_ERRORS):
            return err
        if not isinstance(err, InstantiationException):
            return None
        err = err.__cause__
    return None


ERROR_FILE = "error.txt"  # in the directory of a sweep job that failed on bad input


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Run ``main``; bad input (a wrong value, missing data, data of other classes than the
    checkpoint's, an unknown model, a missing or damaged file) exits 2 with one line.

    In a sweep the failing job writes that line to ``<job dir>/error.txt`` and returns the worst
    value, the other jobs go on, and :class:`SweepErrors` exits 2 at the end."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return main(*args, **kwargs)
        except Exception as err:
            cause = _user_error(err)
            if cause is None:
                raise
            log.error("error: %s", cause)
            if sweep_id() is not None:  # SweepErrors prints the one line at the end
                job_dir = Path(HydraConfig.get().runtime.output_dir)
                (job_dir / ERROR_FILE).write_text(f"error: {cause}\n")
                return _failed_trial_value()  # type: ignore[return-value]
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(getattr(cause, "exit_status", 2))

    return wrapper


def _failed_trial_value() -> float:
    """What a failed job returns to its sweeper: the worst value for an Optuna search (whose
    plugin cannot record a NaN as a failed trial), NaN for the others, which do not look."""
    direction = HydraConfig.get().sweeper.get("direction")
    if direction in ("maximize", "minimize"):
        return float("-inf") if direction == "maximize" else float("inf")
    return float("nan")


class SweepErrors(HydraCallback):
    """After a sweep, one line naming the jobs that failed on bad input, and exit status 2."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = sorted(Path(config.hydra.sweep.dir).glob(f"*/{ERROR_FILE}"))
        if not failed:
            return
        first = failed[0].read_text().strip().removeprefix("error: ")
        others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        message = f"error: {len(failed)} sweep job(s) failed: {failed[0]}: {first}{others}"
        print(message, file=sys.stderr)
        sys.exit(2)
