"""One console process on a fresh pseudo-terminal: spawn, resize, hang up.

The child runs in a session of its own with the pty as its controlling terminal (``TIOCSCTTY``),
so a window-size change on the master reaches it as ``SIGWINCH`` and killing its process group
takes every process it started along with it.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import struct
import sys
import termios
from collections.abc import Mapping
from pathlib import Path

from core.files import SERVED_SESSION_ENV

# Runs first in the child (already in a new session): take the pty on fd 0 as the controlling
# terminal, then exec the console. `python -I -S` starts in a few milliseconds.
# argv[1] is the address-space limit in bytes (0: none), so a console that runs away fails alone.
_BOOT = ("import fcntl, os, resource, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
         "lim = int(sys.argv[1]); lim and resource.setrlimit(resource.RLIMIT_AS, (lim, lim)); "
         "os.execvpe(sys.argv[2], sys.argv[2:], os.environ)")
#: the largest terminal a console draws (a 65535x65535 pty made one grow without bound)
MAX_COLS, MAX_ROWS = 1000, 500
_TERM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_LOCALE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where core/ and tui/ live
_DROP_FROM_SERVER_ENV = ("TERM", "COLORTERM", "COLUMNS", "LINES", "TERM_PROGRAM", "NO_COLOR", "TMUX", "STY")


def clamp_size(cols: int, rows: int) -> tuple[int, int]:
    """A window size a console may get: 80x24 for zero, at most :data:`MAX_COLS` x :data:`MAX_ROWS`."""
    return (min(cols, MAX_COLS) if cols > 0 else 80), (min(rows, MAX_ROWS) if rows > 0 else 24)


def set_window_size(fd: int, cols: int, rows: int) -> None:
    """Set the pty's size (clamped); the kernel signals SIGWINCH to the terminal's foreground process group."""
    cols, rows = clamp_size(cols, rows)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def console_env(term: str | None, client_env: Mapping[str, str], session: str | None = None) -> dict[str, str]:
    """The server's environment minus its own terminal's traits, plus TERM (and colour/locale hints) from the client,
    and the served session's id (the console then saves files only in that session's directory)."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP_FROM_SERVER_ENV}
    env[SERVED_SESSION_ENV] = session or "unnamed"
    env["TERM"] = term if term and _TERM_RE.match(term) else "xterm-256color"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    for name, value in client_env.items():
        locale = (name == "LANG" or name.startswith("LC_")) and _LOCALE_RE.match(value)
        if name == "COLORTERM" and value in ("truecolor", "24bit") or locale:
            env[name] = value
    return env


async def spawn_on_pty(argv: list[str], env: dict[str, str], cols: int, rows: int, memory: int = 0
                       ) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``argv`` on a new pty sized ``cols`` x ``rows`` with at most ``memory`` bytes of address space
    (0: no limit); return the process and the master fd (non-blocking)."""
    master, slave = os.openpty()
    try:
        set_window_size(master, cols, rows)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", _BOOT, str(int(memory)), *argv,
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # only the child holds the slave now, so the master reads EIO once it is gone
    os.set_blocking(master, False)
    return proc, master


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (the console and whatever it started); ignore if gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def hang_up(proc: asyncio.subprocess.Process, grace: float = 2.0) -> int:
    """End a console: SIGHUP its group, SIGKILL the group after ``grace`` seconds, and reap it."""
    signal_group(proc.pid, signal.SIGHUP)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except TimeoutError:
        pass
    signal_group(proc.pid, signal.SIGKILL)
    return await proc.wait()
