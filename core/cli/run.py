"""Running a subcommand's coroutine: typed errors print one sentence and give their exit code.

Its own module so subcommand modules import it without importing :mod:`core.cli.main` (which imports them).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from core.errors import OverlayError

log = logging.getLogger(__name__)
#: exit status after SIGHUP / SIGTERM ended a command (128 + signal number, as a shell reports it)
SIGNAL_EXIT = {signal.SIGHUP: 128 + signal.SIGHUP, signal.SIGTERM: 128 + signal.SIGTERM}


def run_async(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a subcommand coroutine; typed errors print one sentence and give their exit code.

    SIGHUP and SIGTERM cancel the coroutine, so its ``finally`` blocks close the service (the SSH
    pool removes its temporary forward-socket directory) before the process exits.
    """
    got: list[int] = []

    async def guarded() -> int | None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in SIGNAL_EXIT:
            def stop(sig: int = sig) -> None:
                got.append(sig)
                if task is not None:
                    task.cancel()
            loop.add_signal_handler(sig, stop)
        return await coro

    try:
        return asyncio.run(guarded()) or 0
    except OverlayError as e:
        log.info("failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        print(f"overlay-tui: {e}", file=sys.stderr)
        return e.exit_code
    except asyncio.CancelledError:
        if not got:
            raise
        log.info("ended by signal %d", got[0])
        print(f"overlay-tui: ended by {signal.Signals(got[0]).name}", file=sys.stderr)
        return SIGNAL_EXIT[signal.Signals(got[0])]
    except KeyboardInterrupt:
        print("overlay-tui: interrupted", file=sys.stderr)
        return 130
