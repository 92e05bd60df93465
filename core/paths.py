"""Where overlay-tui keeps state on the operator's machine."""
from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Root of overlay-tui's state: $OVERLAY_TUI_STATE, else /var/lib/overlay-tui as root, else ~/.local/state."""
    env = os.environ.get("OVERLAY_TUI_STATE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/overlay-tui")
    return Path.home() / ".local/state/overlay-tui"


def labs_dir() -> Path:
    return state_dir() / "labs"


def lab_dir(name: str) -> Path:
    return labs_dir() / name


def served_files_dir() -> Path:
    """Where a served console's files go: one directory per `serve` session under it."""
    return state_dir() / "serve" / "sessions"
