"""The run's loggers. W&B without surprises: offline when there are no credentials or no network,
never a prompt; a re-run in the same directory continues its W&B run; sweep jobs are grouped."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import hydra
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict

from classicnets.run import launch

log = logging.getLogger(__name__)


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""


def wandb_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_reachable(timeout: float = 2.0) -> bool:
    """A TCP connection to the W&B server opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((_wandb_host(), 443), timeout=timeout):
            return True
    except OSError:
        return False


def configure_wandb(node: DictConfig, run_dir: Path) -> DictConfig:
    """Return the WandbLogger config, switched to offline mode when W&B cannot be used online."""
    node = node.copy()
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    os.environ["WANDB_CONSOLE"] = os.environ.get("WANDB_CONSOLE", "off")
    mode = os.environ.get("WANDB_MODE", "")
    if node.get("offline") or mode in ("offline", "disabled"):
        reason = f"WANDB_MODE={mode}" if mode else "logger.wandb.offline=true"
    elif not wandb_credentials():
        reason = "no W&B credentials (WANDB_API_KEY or `wandb login`)"
    elif not wandb_reachable():
        reason = f"{_wandb_host()} is unreachable"
    else:
        return node
    node.offline = True
    os.environ["WANDB_MODE"] = "disabled" if mode == "disabled" else "offline"
    if mode != "disabled":
        log.warning(
            "W&B is logging offline (%s); upload later with: wandb sync %s/wandb/offline-run-*",
            reason,
            run_dir,
        )
    return node


def instantiate_loggers(cfg: DictConfig | None, run_dir: Path) -> list[Logger]:
    """Every logger of the logger group; W&B falls back to offline when it cannot reach a server."""
    if not cfg:
        return []
    loggers: list[Logger] = []
    for node in cfg.values():
        if not node or "_target_" not in node:
            continue
        if node._target_.endswith("WandbLogger"):
            node = wandb_identity(configure_wandb(node, run_dir), run_dir)
        loggers.append(hydra.utils.instantiate(node))
    return loggers


def wandb_identity(node: DictConfig, run_dir: Path) -> DictConfig:
    """A re-run in this run directory continues its W&B run (same id, the curves go on); the jobs
    of a sweep are grouped by the sweep and named by their job number."""
    node = node.copy()
    with open_dict(node):
        if not node.get("id"):
            node.id = wandb_run_id(Path(node.get("save_dir") or run_dir))
        sweep = launch.sweep_id()
        if sweep is not None:
            node.group = node.get("group") or sweep
            node.name = f"{node.get('name') or 'job'}-{launch.job_number()}"
    return node


def wandb_run_id(save_dir: Path) -> str | None:
    """The id of the last W&B run logged under ``save_dir`` (``wandb/[offline-]run-<time>-<id>``),
    so that a resumed run continues its curves; None when there is none."""
    runs = [p for p in (save_dir / "wandb").glob("*run-*-*") if p.is_dir() and not p.is_symlink()]
    if not runs:
        return None
    return max(runs, key=lambda p: p.stat().st_mtime_ns).name.rsplit("-", 1)[-1]


def finish_loggers(loggers: list[Logger]) -> None:
    """Close W&B runs, so the next job of a sweep starts a run of its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb.finish()
