"""One SSH session of the console server: a console process on its own pty, bytes bridged both ways.

Sessions without a terminal, with a command, or over the bound get one line and a non-zero exit.
The console's exit status becomes the session's; a client that goes away hangs up the console.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass, field

import asyncssh

from core.serve.accesslog import fields
from core.serve.keys import KeyGrant
from core.serve.pty import clamp_size, hang_up, set_window_size, signal_group
from core.serve.spare import ConsoleLauncher

log = logging.getLogger("overlay_tui.serve")

NO_TERMINAL = "overlay-tui: this server serves an interactive console; connect with a terminal (ssh -t)"
NO_COMMANDS = "overlay-tui: this server runs no commands, only the console; connect without a command (ssh -t)"
_INPUT_HIGH_WATER = 64 * 1024
_EOF_WAIT = 0.5  # after the console exits, how long its last output may take to drain


@dataclass
class SessionSlots:
    """The bounds on concurrent consoles, shared by every connection of one server: ``limit`` in all and
    ``per_key`` for any one key."""

    limit: int
    per_key: int = 0            # 0: no bound per key beyond ``limit``
    active: set = field(default_factory=set)

    def refusal(self, session: ConsoleSession) -> str | None:
        """Why ``session`` gets no console now, or None after taking a slot for it."""
        if len(self.active) >= self.limit:
            return f"all {self.limit} console sessions are in use; try again later"
        if self.per_key and sum(1 for s in self.active if s.key == session.key) >= self.per_key:
            return f"this key already has {self.per_key} console sessions open; close one first"
        self.active.add(session)
        return None

    def release(self, session: ConsoleSession) -> None:
        self.active.discard(session)


class ConsoleSession(asyncssh.SSHServerSession):
    """The asyncssh session object for one channel: runs a console on a pty and bridges it."""

    def __init__(self, launcher: ConsoleLauncher, slots: SessionSlots, who: str, *, key: str = "?",
                 grant: KeyGrant | None = None, idle_timeout: float = 0) -> None:
        """``key``: the fingerprint that authenticated; ``grant``: what its authorized_keys options allow;
        ``idle_timeout``: seconds without a key press after which the console is hung up (0: never)."""
        self._launcher, self._slots, self._who = launcher, slots, who
        self.key, self._grant, self._idle_timeout = key, grant or KeyGrant(True), idle_timeout
        self._last_input = time.monotonic()
        self._idle: asyncio.TimerHandle | None = None
        self._chan: asyncssh.SSHServerChannel | None = None
        self._term: str | None = None
        self._size = (80, 24)
        self._command: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._master: int | None = None
        self._pending_input = bytearray()
        self._eof = asyncio.Event()
        self._gone = False
        self._input_paused = False
        self._ending: asyncio.Task | None = None  # the hang-up of a console whose client went away
        self.task: asyncio.Task | None = None
        #: names this session in the access log and its directory of saved files
        self.session_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)

    # --- requests from the client -------------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes) -> bool:
        if not self._grant.console:
            return False          # no-pty / restrict: no terminal (session_started says why)
        self._term, self._size = term_type, clamp_size(term_size[0], term_size[1])
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command  # answered with a one-line refusal, not run
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        log.info("%s: refused subsystem %r", self._who, subsystem)
        return False

    def session_started(self) -> None:
        if not self._grant.console:
            return self._refuse(f"overlay-tui: {self._grant.why_not}", f"refused: {self._grant.why_not}")
        if self._command is not None:
            return self._refuse(NO_COMMANDS if self._term else NO_TERMINAL, f"refused command {self._command!r}")
        if self._term is None:
            return self._refuse(NO_TERMINAL, "refused a session without a terminal")
        refusal = self._slots.refusal(self)
        if refusal:
            return self._refuse(f"overlay-tui: {refusal}", f"refused: {refusal}")
        self.task = asyncio.get_running_loop().create_task(self._run())

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._size = clamp_size(width, height)
        if self._master is not None:
            set_window_size(self._master, *self._size)

    def data_received(self, data: bytes, datatype) -> None:
        self._last_input = time.monotonic()
        self._pending_input += data  # kept until the console's pty exists
        self._flush_input()

    def eof_received(self) -> bool:
        return True  # keep the console running; it ends on quit or disconnect

    def break_received(self, msec: int) -> bool:
        return False

    def pause_writing(self) -> None:
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)

    def resume_writing(self) -> None:
        if self._master is not None and not self._eof.is_set():
            asyncio.get_running_loop().add_reader(self._master, self._read_output)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        if self._proc is not None and self._proc.returncode is None:
            log.info("%s: client went away; hanging up its console (pid %d)", self._who, self._proc.pid)
            self._ending = asyncio.get_running_loop().create_task(hang_up(self._proc))

    async def hang_up(self) -> None:
        """End this session's console (the server is stopping)."""
        if self._proc is not None and self._proc.returncode is None:
            await hang_up(self._proc, grace=1.0)

    # --- the console ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._chan is not None
        try:
            self._proc, self._master, warm = await self._launcher.start(self._term, self._chan.get_environment(),
                                                                        *self._size, session=self.session_id)
        except Exception as e:  # noqa: BLE001 - this session fails; the server and the others go on
            self._slots.release(self)
            log.error("%s: cannot start the console: %s", self._who, e)
            return self._refuse(f"overlay-tui: cannot start the console ({getattr(e, 'strerror', None) or e})",
                                "spawn failed")
        loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._read_output)
        self._flush_input()
        if self._idle_timeout > 0:
            self._idle = loop.call_later(self._idle_timeout, self._check_idle)
        if self._gone:  # the client left while the console was starting
            self._ending = loop.create_task(hang_up(self._proc))
        log.info("%s: console started (pid %d, %s, TERM=%s, %dx%d, session %s)", self._who, self._proc.pid,
                 "warm spare" if warm else "cold start", self._term, *self._size, self.session_id,
                 extra=fields(event="console-started", pid=self._proc.pid, session=self.session_id, key=self.key))
        try:
            status = await self._proc.wait()
            try:
                await asyncio.wait_for(self._eof.wait(), _EOF_WAIT)
            except TimeoutError:
                pass  # something the console started still holds the pty: it goes with the group below
        finally:
            await self._close_console()
        log.info("%s: console ended with status %s", self._who, status)
        if not self._gone:
            self._chan.exit(status if status >= 0 else 128 - status)

    def _check_idle(self) -> None:
        """Hang up a console that has had no input for ``idle_timeout`` seconds; else look again when it could be."""
        self._idle = None
        if self._proc is None or self._proc.returncode is not None:
            return
        left = self._last_input + self._idle_timeout - time.monotonic()
        loop = asyncio.get_running_loop()
        if left > 0:
            self._idle = loop.call_later(left, self._check_idle)
            return
        log.info("%s: idle for %.0f s: hanging up its console (pid %d)", self._who, self._idle_timeout,
                 self._proc.pid, extra=fields(event="idle", session=self.session_id))
        if self._chan is not None and not self._gone:
            self._chan.write(f"\r\noverlay-tui: no input for {self._idle_timeout:.0f} s: session closed\r\n".encode())
        self._ending = loop.create_task(hang_up(self._proc))

    async def _close_console(self) -> None:
        assert self._proc is not None and self._master is not None
        loop = asyncio.get_running_loop()
        if self._idle is not None:
            self._idle.cancel()
        signal_group(self._proc.pid, signal.SIGKILL)  # anything the console left behind
        if self._proc.returncode is None:
            await hang_up(self._proc, grace=0)
        loop.remove_reader(self._master)
        loop.remove_writer(self._master)
        os.close(self._master)
        self._master = None
        self._slots.release(self)

    def _read_output(self) -> None:
        assert self._master is not None and self._chan is not None
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:
                log.warning("%s: reading the console's pty failed: %s", self._who, e)
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
            self._eof.set()
            return
        if not self._gone:
            self._chan.write(data)

    def _flush_input(self) -> None:
        if self._master is None or self._chan is None:
            return
        loop = asyncio.get_running_loop()
        try:
            while self._pending_input:
                n = os.write(self._master, self._pending_input)
                del self._pending_input[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._pending_input.clear()  # the console is gone; its exit ends the session
        if self._pending_input:
            loop.add_writer(self._master, self._flush_input)
            if len(self._pending_input) > _INPUT_HIGH_WATER and not self._input_paused:
                self._input_paused = True
                self._chan.pause_reading()
        else:
            loop.remove_writer(self._master)
            if self._input_paused:
                self._input_paused = False
                self._chan.resume_reading()

    def _refuse(self, line: str, why: str) -> None:
        assert self._chan is not None
        log.info("%s: %s", self._who, why)
        self._chan.write_stderr((line + ("\r\n" if self._term else "\n")).encode())
        self._chan.exit(1)
