"""A recipe composed the way ``src/train.py`` composes it, for the diagnostic scripts."""

from __future__ import annotations

import logging
from collections.abc import Sequence


def recipe_name(overrides: Sequence[str]) -> str:
    """The ``model=NAME`` of the overrides (``lenet5``, the default, without one)."""
    names = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "model"]
    return names[-1] if names else "lenet5"


def overridden(overrides: Sequence[str], key: str) -> bool:
    """Whether the overrides set ``key`` (``data.root``)."""
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def one_line(err: Exception) -> str:
    """Hydra's message on one line: an unknown ``model=NAME`` lists the options below it (its
    config search path, after them, is left out)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    first, *rest = lines
    if len(rest) < 2:
        return " ".join(lines)
    return f"{first}; {rest[0].rstrip(':').lower()}: {', '.join(rest[1:])}"


def console_logging() -> None:
    """Warnings to stderr, once each: ``exit_on_user_error`` logs its ``error:`` line (for a run's
    log file) and prints it, and a script has no log file, so the logged copy is dropped."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("classicnets").addFilter(
        lambda record: not record.getMessage().startswith("error: ")
    )
