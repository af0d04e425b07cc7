"""W&B without surprises: offline when there are no credentials or no network, never a prompt."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig

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
            reason, run_dir,
        )  # fmt: skip
    return node
