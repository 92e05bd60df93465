"""Running a subcommand's coroutine: typed errors print one sentence and give their exit code.

Its own module so subcommand modules import it without importing :mod:`core.cli.main` (which imports them).
"""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from core.errors import OverlayError


def run_async(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a subcommand coroutine; typed errors print one sentence and give their exit code."""
    try:
        return asyncio.run(coro) or 0
    except OverlayError as e:
        print(f"overlay-tui: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("overlay-tui: interrupted", file=sys.stderr)
        return 130
