"""Bad input ends with one line that says what to do, not a traceback."""

from __future__ import annotations

import argparse
import errno
import functools
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException, OverrideParseException
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from classicnets.data.common import ClassMismatchError, DatasetNotFoundError
from classicnets.models.heads import HeadError
from classicnets.models.init_from import InitFromError
from classicnets.models.registry import UnknownModelError
from classicnets.run import checks, compat
from classicnets.run.allowlist import ForeignTargetError
from classicnets.run.checks import (
    ConfigValueError,
    MissingValueError,
    StateDictMismatchError,
    TrainerArgumentError,
)
from classicnets.run.launch import RankDiedError, sweep_id
from classicnets.run.resume import DiskFullError
from classicnets.run.safe_load import (
    CorruptCheckpointError,
    HashMismatchError,
    UnsafeCheckpointError,
)

log = logging.getLogger("classicnets")

T = TypeVar("T")


USER_ERRORS = (
    ConfigValueError,
    MissingValueError,
    StateDictMismatchError,
    TrainerArgumentError,
    FloatingPointError,  # the loss went NaN or infinite (module.py): a learning rate too high
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
    HeadError,
    ForeignTargetError,
)


# A path the user gave that cannot be written (a read-only run directory, one under a file).
ACCESS_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


def _user_error(err: BaseException) -> BaseException | None:
    """The user-facing cause of ``err`` (Hydra wraps errors raised while instantiating)."""
    while err is not None:
        if isinstance(err, USER_ERRORS) or _is_access_error(err):
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
            message = one_line(cause)
            if HydraConfig.initialized():  # into the run's log file (a script has none)
                log.error("error: %s", message)
            if sweep_id() is not None:  # SweepErrors prints the one line at the end
                job_dir = Path(HydraConfig.get().runtime.output_dir)
                (job_dir / ERROR_FILE).write_text(f"error: {message}\n")
                return _failed_trial_value()  # type: ignore[return-value]
            exit_with(message, getattr(cause, "exit_status", 2))

    return wrapper


def exit_with(message: str, status: int = 2) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with ``status``."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def overrides_only(argv: Sequence[str] | None, command: str, example: str, usage: str) -> list[str]:
    """The overrides of a command that takes ``key=value`` only: ``--help`` prints ``usage`` and
    exits 0; a flag is one ``error:`` line (exit 2) naming it, with an ``example``."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in overrides):
        print(usage)
        sys.exit(0)
    flags = [arg for arg in overrides if arg.startswith("-")]
    if flags:
        exit_with(
            f"{flags[0]}: {command} takes overrides only (key=value), e.g. {example}; see --help"
        )
    return overrides


def one_line(err: BaseException) -> str:
    """The message of a user error, on one line."""
    if _is_access_error(err):
        assert isinstance(err, OSError)
        return (
            f"{err.filename}: {err.strerror}; choose a folder you can write to (for a run: "
            "hydra.run.dir=DIR) or change its permissions"
        )
    return " ".join(str(err).split())


def _is_access_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in ACCESS_ERRNOS and err.filename is not None


def hydra_main(
    config_path: str, config_name: str
) -> Callable[[Callable[[DictConfig], T]], Callable[..., T | None]]:
    """``hydra.main`` for the project's commands (src/train.py, eval, predict, export), with every
    bad input as one ``error:`` line and exit status 2: Hydra's own errors while it composes the
    config (an unknown key or group option, an override it cannot parse), a required value left
    at ``???``, a number that is not finite, and the user errors the command raises
    (:func:`exit_on_user_error`). Called with a config (tests), it runs the command on it.

    Hydra reports its errors itself, on several lines with exit status 1, unless the documented
    ``HYDRA_FULL_ERROR`` is set; then it raises them, and they are caught here."""

    def decorate(task: Callable[[DictConfig], T]) -> Callable[..., T | None]:
        @exit_on_user_error
        @functools.wraps(task)
        def checked_task(cfg: DictConfig) -> T:
            checks.required_values(cfg)
            checks.finite_numbers(cfg)
            try:
                return task(cfg)
            except BaseException as err:
                _raised_by_task.append(err)  # not Hydra's: its traceback is shown in full
                raise

        # Absolute, so that Hydra finds conf/ however the entry point was imported (tests)
        conf_dir = str((Path(inspect.getfile(task)).parent / config_path).resolve())
        hydra_task = hydra.main(version_base="1.3", config_path=conf_dir, config_name=config_name)(
            checked_task
        )

        @functools.wraps(task)
        def main(cfg: DictConfig | None = None) -> T | None:
            if cfg is not None:
                return checked_task(cfg)
            unknown = compat.hydra_unknown_flags(sys.argv[1:])
            if unknown:
                exit_with(
                    f"{unknown[0]} is not an option of this command: settings are key=value "
                    f"overrides (see {Path(sys.argv[0]).name} --help)"
                )
            _raised_by_task.clear()
            try:
                with _hydra_raises():
                    return hydra_task()
            except (HydraException, OmegaConfBaseException, OSError) as err:
                if any(err is raised for raised in _raised_by_task):
                    raise
                if isinstance(err, (HydraException, OmegaConfBaseException)):
                    exit_with(hydra_message(err))
                if not _is_access_error(err):  # Hydra making the run directory, for one
                    raise
                exit_with(one_line(err))

        return main

    return decorate


_raised_by_task: list[BaseException] = []


@contextmanager
def _hydra_raises() -> Iterator[None]:
    """Hydra raises its errors (``HYDRA_FULL_ERROR=1``) instead of printing them and exiting 1."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


# Hydra's hints that point at itself, not at the input: left out of the one line.
_HYDRA_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable")


def hydra_message(err: BaseException) -> str:
    """One line from Hydra's several: "Could not find 'model/resnet5'; Available options in
    'model': alexnet, googlenet, ..." (the config search path and OmegaConf's key details go)."""
    texts = [str(err)]
    if err.__cause__ is not None and str(err.__cause__) not in texts[0]:
        texts.append(str(err.__cause__))
    parts: list[str] = []
    for text in texts:
        if "Config search path:" in text:
            text = text.split("Config search path:")[0]
        heading: list[str] = []  # a line ending in ":" and the indented options under it
        for line in text.splitlines():
            if not line.strip() or line.strip().startswith(_HYDRA_NOISE):
                continue
            if heading and line[:1].isspace():
                heading.append(line.strip())
                continue
            if heading:
                parts.append(_joined(heading))
                heading = []
            if line.rstrip().endswith(":"):
                heading = [line.strip()]
            else:
                parts.append(re.sub(r"^In '[^']*': ", "", line.strip()).rstrip("."))
        if heading:
            parts.append(_joined(heading))
    message = "; ".join(part for part in parts if part)
    if isinstance(err, OverrideParseException):
        return f"cannot read the override {err.override!r}: {message}"
    return message


def _joined(heading: list[str]) -> str:
    return f"{heading[0]} {', '.join(heading[1:])}".rstrip(":")


class ArgumentParser(argparse.ArgumentParser):
    """The scripts' parser: a wrong flag is one ``error:`` line (and ``--help``), exit status 2,
    as for every other bad input, rather than argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        exit_with(f"{message}; see {self.prog} --help")


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


def positive(text: str) -> int:
    """An argparse ``type``: a count of at least 1 (``--k 0`` is one error line)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative(text: str) -> int:
    """An argparse ``type``: a count of at least 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, lowest: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lowest - 1
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: use {wanted}")
    return value
