"""The console's end of the capture worker (:mod:`core.capture.worker`): start it, read its batches, stop it.

:class:`WorkerCapture` starts ``python -m core.capture.worker`` (the same interpreter and source tree), sends
it the capture's nodes and options, and turns its messages into :class:`core.model.FrameBatch` objects whose
``frames`` are :class:`core.capture.wire.FrameColumns` (Frames built only for the rows read) and whose
``flows`` are the worker's per-flow counts of that batch. Reading a batch costs this process no Python
work per frame. Names go down to the worker whenever they change.

The worker's failures arrive as the :class:`core.errors.OverlayError` it raised (same class and sentence);
a worker that dies without a word is a :class:`core.errors.CaptureError` naming its exit status and last
line of stderr. :meth:`WorkerCapture.close` asks it to stop (it kills every remote tcpdump), waits for it
a bounded time, then kills it; closing the pipe also stops it, and so does this process dying.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core import errors
from core.capture.names import names_to_json
from core.capture.wire import LENGTH, MAX_MESSAGE, ColumnDecoder, ProtocolError, flows_from_json, pack_message, unpack_message
from core.errors import CaptureError, OverlayError
from core.model import FrameBatch, Names, NodeSpec

log = logging.getLogger(__name__)
STOP_WAIT = 20.0               # the worker stops its nodes' tcpdumps (9 s + 2 s each at most, concurrently) within this
_ROOT = str(Path(__file__).resolve().parents[2])


def _error(kind: str, message: str) -> OverlayError:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, OverlayError):
        try:
            return cls(message)
        except TypeError:          # a class with another constructor (SSHError's node, ...): keep the sentence
            pass
    return CaptureError(message)


class WorkerCapture:
    """One capture run by a worker process; iterate :meth:`batches`, then :meth:`close`."""

    def __init__(self, config: dict[str, Any], specs: list[NodeSpec] | None = None) -> None:
        self.config = config
        self.specs = specs or []
        self.proc: asyncio.subprocess.Process | None = None
        self.decoder = ColumnDecoder()
        self.stderr: deque[str] = deque(maxlen=20)
        self.where = ""
        self.node_addresses: dict[str, str] = {}
        self.cpu = 0.0                      #: the worker's CPU seconds, as of its last batch
        self._err_task: asyncio.Task | None = None
        self._ended = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        """Start the worker and wait until it captures (or raise what stopped it)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "core.capture.worker", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=_ROOT,
                start_new_session=True, limit=MAX_MESSAGE)
        except OSError as e:
            raise CaptureError(f"the capture worker process could not start: {e}") from None
        self._err_task = asyncio.create_task(self._read_stderr())
        await self.send({"kind": "start", **self.config}, pickle.dumps(self.specs))
        header, _ = await self.read()
        if header.get("kind") != "started":
            raise CaptureError(f"the capture worker said {header.get('kind')!r} before it started (a bug)")
        self.where = str(header.get("on") or "")
        self.node_addresses = {str(k): str(v) for k, v in (header.get("node_addresses") or {}).items()}

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr.append(text)
            if text.strip():
                # into this process's log file (the worker writes warnings and worse only)
                log.warning("capture worker %s: %s", self.proc.pid, text)

    async def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(pack_message(header, body))
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError):
            pass                            # it is gone: the next read says why

    async def send_names(self, names: Names) -> None:
        await self.send({"kind": "names", "names": names_to_json(names)})

    async def read(self) -> tuple[dict[str, Any], memoryview]:
        """The next message; a dead worker raises its error (or a CaptureError saying it died)."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            (n,) = LENGTH.unpack(await self.proc.stdout.readexactly(4))
            if n > MAX_MESSAGE:
                raise ProtocolError(f"message of {n} bytes")
            header, body = unpack_message(await self.proc.stdout.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError):
            raise await self._died() from None
        except ProtocolError as e:
            raise CaptureError(f"the capture worker sent something unreadable ({e}); a bug: start the capture "
                               "again") from None
        if header.get("kind") == "error":
            self._ended = True
            raise _error(str(header.get("type")), str(header.get("message") or "the capture failed"))
        return header, body

    async def _died(self) -> CaptureError:
        assert self.proc is not None
        try:
            status = await asyncio.wait_for(self.proc.wait(), 2)
        except TimeoutError:
            status = None
        if self._err_task is not None:
            await asyncio.wait({self._err_task}, timeout=1)
        self._ended = True
        why = f"exit status {status}" if status is not None and status >= 0 else \
            f"killed by signal {-status}" if status is not None else "its output closed"
        last = next((ln for ln in reversed(self.stderr) if ln.strip()), "")
        return CaptureError(f"the capture worker process ended unexpectedly ({why}" + (f": {last}" if last else "")
                            + "); start the capture again")

    async def batches(self) -> AsyncIterator[FrameBatch]:
        """The worker's batches until it ends."""
        while True:
            header, body = await self.read()
            kind = header.get("kind")
            if kind == "end":
                self._ended = True
                return
            if kind != "batch":
                continue
            self.cpu = float(header.get("cpu") or 0.0)
            frames = self.decoder.decode(header, body)
            yield FrameBatch(frames, dropped=int(header.get("dropped") or 0),
                             malformed=int(header.get("malformed") or 0),
                             notices=[str(t) for t in header.get("notices") or ()],
                             flows=flows_from_json(header.get("flows") or []))

    async def close(self) -> None:
        """Stop the worker (it stops every remote tcpdump), bounded; kill it if it does not end."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            if not self._ended:
                await self.send({"kind": "stop"})
            drain = asyncio.create_task(self._drain())
            try:
                await asyncio.wait_for(proc.wait(), STOP_WAIT)
            except TimeoutError:
                log.warning("capture worker %s did not stop within %g s: killed (its nodes' tcpdumps end with "
                            "their SSH channels)", proc.pid, STOP_WAIT)
                proc.kill()
                await proc.wait()
            except BaseException:           # cancelled while it stops: it must not outlive us (its nodes'
                proc.kill()                 # tcpdumps end with its SSH channels)
                raise
            finally:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
        if proc.stdin is not None:
            proc.stdin.close()
        if self._err_task is not None:
            self._err_task.cancel()
            await asyncio.gather(self._err_task, return_exceptions=True)

    async def _drain(self) -> None:
        """Read (and drop) what the worker still sends while it stops, so its writes never block."""
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(1 << 16):
            pass
