"""A console started before anyone connects, so a new session skips Python's and Textual's start-up.

The spare runs on its own pty (own session, controlling terminal) like any console, imports the console's
modules, then blocks reading one line from its terminal. When a session takes it, the server sets the
window size and writes ``GO <json env>`` (the client's TERM, COLORTERM, locale): the spare takes that
environment and runs the console. The next spare is started right after one is taken. A spare that has
died is never handed out: the session starts a console the ordinary way instead.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Mapping

from core.files import SERVED_SESSION_ENV
from core.serve.pty import console_env, hang_up, set_window_size, signal_group, spawn_on_pty

log = logging.getLogger("overlay_tui.serve")

# Runs in the spare: ``python -P -c SPARE_CODE <console args>``.
SPARE_CODE = r'''
import json, os, sys, termios
attrs = termios.tcgetattr(0)
quiet = list(attrs)
quiet[3] &= ~termios.ECHO
termios.tcsetattr(0, termios.TCSANOW, quiet)
import tui.launcher, tui.app
try:
    import core.live
except Exception:
    pass
line = os.read(0, 4096)
if not line.startswith(b"GO "):
    sys.exit(1)
os.environ.update(json.loads(line[3:]))
termios.tcsetattr(0, termios.TCSANOW, attrs)
sys.argv = ["overlay-tui", *sys.argv[1:]]
sys.exit(tui.launcher.main())
'''

_REFILL_DELAY = 1.0  # seconds: the next spare's start-up would slow the taken one's first paint
Console = tuple[asyncio.subprocess.Process, int]


class ConsoleLauncher:
    """Starts consoles for sessions: from a warm spare when one is ready, else afresh."""

    def __init__(self, argv: list[str], console_args: list[str] | None, warm: bool = True, memory: int = 0) -> None:
        """``argv`` starts a console; ``console_args`` (the console's own options) enable spares; ``memory``
        bounds each console's address space in bytes (0: no bound)."""
        self._argv, self._args, self._memory = argv, console_args or [], memory
        self._warm = warm and console_args is not None
        self._spare: Console | None = None
        self._filling: asyncio.Task | None = None

    def prepare(self) -> None:
        """Start the first spare (call once the event loop runs)."""
        if self._warm:
            self._filling = asyncio.get_running_loop().create_task(self._fill(0))

    async def start(self, term: str | None, client_env: Mapping[str, str], cols: int, rows: int,
                    session: str | None = None) -> tuple[asyncio.subprocess.Process, int, bool]:
        """A console for one session (id ``session``) on a pty of ``cols`` x ``rows``: (process, master fd, came warm)."""
        env = console_env(term, client_env, session)
        spare = await self._take()
        if spare is not None:
            proc, master = spare
            set_window_size(master, cols, rows)
            passed = {k: env[k] for k in env
                      if k in ("TERM", "COLORTERM", "LANG", SERVED_SESSION_ENV) or k.startswith("LC_")}
            os.write(master, b"GO " + json.dumps(passed).encode() + b"\n")
            return proc, master, True
        proc, master = await spawn_on_pty(self._argv, env, cols, rows, self._memory)
        return proc, master, False

    async def close(self) -> None:
        self._warm = False
        if self._filling is not None:
            self._filling.cancel()
        if self._spare is not None:
            proc, master = self._spare
            self._spare = None
            await hang_up(proc, grace=0.5)
            os.close(master)

    async def _take(self) -> Console | None:
        if not self._warm:
            return None
        spare, self._spare = self._spare, None
        if self._filling is None or self._filling.done():
            self._filling = asyncio.get_running_loop().create_task(self._fill(_REFILL_DELAY))
        if spare is not None and spare[0].returncode is not None:
            log.warning("the warm spare console had exited (status %s); starting one afresh", spare[0].returncode)
            os.close(spare[1])
            signal_group(spare[0].pid, signal.SIGKILL)
            return None
        return spare

    async def _fill(self, delay: float) -> None:
        await asyncio.sleep(delay)  # let the session that took the last spare paint first
        try:
            env = console_env("xterm-256color", {})
            self._spare = await spawn_on_pty(
                [self._argv[0], "-P", "-c", SPARE_CODE, *self._args], env, 80, 24, self._memory)
        except OSError as e:
            log.warning("cannot start a warm spare console (%s); sessions start consoles afresh", e)
            self._warm = False
