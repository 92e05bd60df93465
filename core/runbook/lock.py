"""One runbook apply at a time: a lock on the operator's machine and one on every node.

Two applies at once both restarted etcd and dockerd (a second etcd died with "address already in
use", dockerd found its pid file, both logs were cut). :class:`ApplyLock` takes

- an flock on ``<state dir>/locks/runbook-<inventory hash>.lock`` (another apply from this machine
  on the same inventory), whose file names the holder;
- on each node, an flock on ``/run/lock/overlay-tui-runbook.lock`` held by a small process (``cat``
  holding the locked descriptor) that lives as long as the apply's SSH channel: when the apply ends,
  or its operator's machine dies, the channel closes and the kernel drops the lock, so a lock is never
  left stale. ``/run/lock/overlay-tui-runbook.lock.owner`` names the holder.

A second apply does not wait: it refuses with :class:`RunbookBusy`, naming who holds the lock.
"""
from __future__ import annotations

import asyncio
import fcntl
import getpass
import hashlib
import os
import shlex
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

from core.errors import OverlayError, SSHError
from core.model import Inventory
from core.paths import state_dir

NODE_LOCK = "/run/lock/overlay-tui-runbook.lock"


class RunbookBusy(OverlayError):
    """Another runbook apply holds the lock (here or on a node); nothing was changed."""


def _holder() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.geteuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S UTC', time.gmtime())}"


def node_lock_script(owner: str) -> str:
    """Take the node's lock or say who has it; then hold it until stdin closes (the apply's channel)."""
    lock, own = shlex.quote(NODE_LOCK), shlex.quote(NODE_LOCK + ".owner")
    return (f"mkdir -p /run/lock; exec 9>>{lock} || exit 70; "
            "command -v flock >/dev/null 2>&1 || { echo 'missing flock (util-linux)'; exit 71; }; "
            f"if ! flock -n 9; then echo \"busy $(cat {own} 2>/dev/null)\"; exit 75; fi; "
            f"printf '%s\\n' {shlex.quote(owner)} > {own}; echo locked; exec cat > /dev/null")


class ApplyLock:
    """Held for the duration of one runbook apply (see the module docstring)."""

    def __init__(self, pool, inventory: Inventory) -> None:
        self.pool, self.inventory = pool, inventory

    @property
    def path(self) -> Path:
        digest = hashlib.sha1(os.path.abspath(self.inventory.path).encode()).hexdigest()[:12]
        return state_dir() / "locks" / f"runbook-{digest}.lock"

    def _take_local(self, owner: str) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")      # held open for the whole apply, closed by release
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = fh.read().strip() or "another process"
            fh.close()
            raise RunbookBusy(f"another runbook apply on {self.inventory.path} is running ({who}); "
                              "wait for it to finish, then apply again; nothing was changed") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"runbook apply by {owner}\n")
        fh.flush()
        return fh

    async def _take_node(self, node: str, owner: str):
        """The node's lock holder (a RemoteStream), or None when the node cannot be reached (its steps fail anyway)."""
        try:
            stream = await asyncio.wait_for(self.pool.stream(node, "sh -c " + shlex.quote(node_lock_script(owner))),
                                            self.pool.spec(node).connect_timeout + 5)
        except (SSHError, TimeoutError):
            return None
        try:
            line = await asyncio.wait_for(stream.process.stdout.readline(), 15)
        except TimeoutError:
            line = b""
        text = (line.decode(errors="replace") if isinstance(line, bytes) else str(line)).strip()
        if text == "locked":
            return stream
        await stream.stop()
        if text.startswith("busy"):
            who = text.removeprefix("busy").strip() or "another operator"
            raise RunbookBusy(f"{node}: another runbook apply holds the node's lock {NODE_LOCK} ({who}); "
                              "wait for it to finish, then apply again; nothing was changed")
        raise RunbookBusy(f"{node}: could not take the runbook lock {NODE_LOCK} ({text or 'no answer'}); "
                          "nothing was changed")

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        owner = _holder()
        fh = self._take_local(owner)
        streams = []
        try:
            for n in sorted(self.inventory.nodes, key=lambda s: s.name):   # one order: two operators never deadlock
                stream = await self._take_node(n.name, owner)
                if stream is not None:
                    streams.append(stream)
            yield
        finally:
            await asyncio.gather(*(s.stop() for s in streams), return_exceptions=True)
            fh.close()
