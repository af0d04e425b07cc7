"""Bad input ends with one line that says what to do, not a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import InstantiationException

from classicnets.data.common import ClassMismatchError, DatasetNotFoundError
from classicnets.models.init_from import InitFromError
from classicnets.models.registry import UnknownModelError
from classicnets.safe_load import CorruptCheckpointError, HashMismatchError, UnsafeCheckpointError

log = logging.getLogger("classicnets")

T = TypeVar("T")
USER_ERRORS = (
    DatasetNotFoundError,
    ClassMismatchError,
    UnknownModelError,
    InitFromError,
    FileNotFoundError,
    UnsafeCheckpointError,
    CorruptCheckpointError,
    HashMismatchError,
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


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Run ``main``; a missing dataset, data of other classes than the checkpoint's, an unknown
    model or a missing file exits 2 with one line."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return main(*args, **kwargs)
        except Exception as err:
            cause = _user_error(err)
            if cause is None:
                raise
            log.error("error: %s", cause)
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(2)

    return wrapper
