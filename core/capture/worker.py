"""The capture worker: a process of its own that captures, decodes, names and counts flows, off the console's core.

Started by :class:`core.capture.offload.WorkerCapture` as ``python -m core.capture.worker`` with pipes on
stdin and stdout (messages of :mod:`core.capture.wire`). It reads one ``start`` message (the nodes, the
VXLAN port, the capture's options; the node specs pickled in the body: both ends are this program), opens
its own SSH connections (:class:`core.ssh.SSHPool`) and runs :class:`core.capture.remote.LiveCapture`
there: remote tcpdump per node, the stream decoder, the time-ordered merge. Each merged batch is named
(the console sends ``names`` down whenever they change; the first frames wait for the first names, at most
``first_wait`` s), counted per flow (:class:`core.capture.flows.FlowTable`, what the batch adds) and sent
up in columns (:class:`core.capture.wire.ColumnEncoder`).

Up: ``started`` (where it captures, the underlay addresses it found), ``batch``, ``error`` (an
:class:`core.errors.OverlayError`'s class and sentence) and ``end``. Down: ``names``, ``stop``. It stops
(every remote tcpdump killed) on ``stop``, on EOF of stdin (the console closed the pipe or died), and on
SIGTERM (which the kernel sends when the console dies: ``PR_SET_PDEATHSIG``). It runs in a session of its
own, so a Ctrl-C at the terminal reaches the console, which then stops it in order.

``source: "flood"`` replaces the nodes by a synthetic feed (a pcap's records replayed at ``rate`` frames/s as
tcpdump byte streams, one per node name, through the same decoder and merge): the benchmark and the tests
use it where no lab runs.
"""
from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import os
import pickle
import signal
import sys
import time
from struct import Struct
from typing import Any

from core.capture.flows import FlowTable
from core.capture.merge import FrameMerger
from core.capture.names import apply_names, names_from_json
from core.capture.stream import StreamDecoder
from core.capture.wire import (
    LENGTH,
    MAX_MESSAGE,
    ColumnEncoder,
    FrameColumns,
    flows_to_json,
    pack_message,
    unpack_message,
)
from core.errors import CaptureError, OverlayError
from core.model import Names

PR_SET_PDEATHSIG = 1
F_SETPIPE_SZ = 1031            # fcntl (Linux)
PIPE_BYTES = 8 << 20           # as root; others get the system's pipe-max-size (1 MiB by default)
MERGE_BATCH = 20_000           # frames per message at most (a batch is what arrived in one merge interval)


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the process that started this one dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:               # the parent died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Worker:
    """One capture, from the ``start`` message to ``end``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.names: Names | None = None
        self.got_names = asyncio.Event()
        self.stopping = asyncio.Event()
        self.encoder = ColumnEncoder()

    async def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        self.writer.write(pack_message(header, body))
        await self.writer.drain()

    async def read(self) -> tuple[dict[str, Any], memoryview] | None:
        try:
            (n,) = LENGTH.unpack(await self.reader.readexactly(4))
            if n > MAX_MESSAGE:
                return None
            return unpack_message(await self.reader.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def control(self) -> None:
        """Messages from the console: names, stop; EOF (the console is gone) stops too."""
        while (msg := await self.read()) is not None:
            header, _ = msg
            if header.get("kind") == "names":
                self.names = names_from_json(header.get("names") or {})
                self.got_names.set()
            elif header.get("kind") == "stop":
                break
        self.stopping.set()

    async def run(self) -> int:
        msg = await self.read()
        if msg is None or msg[0].get("kind") != "start":
            return 2
        config, body = msg
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        control = asyncio.create_task(self.control())
        try:
            source = _source(config, bytes(body))
            starting = asyncio.create_task(source.start())
            stop_wait = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():                       # stopped while starting: nothing to report
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                await source.stop()
                return 0
            stop_wait.cancel()
            starting.result()
        except OverlayError as e:
            await self.send({"kind": "error", "type": type(e).__name__, "message": str(e)})
            return 1
        await self.send({"kind": "started", "on": source.where(), "node_addresses": source.node_addresses()})
        stopper = asyncio.create_task(self._stop_when_told(source))
        try:
            await self.pump(source.merger, float(config.get("first_wait", 3.0)) + 2.0)
        finally:
            stopper.cancel()
            await source.stop()
            control.cancel()
        await self.send({"kind": "end"})
        return 0

    async def _stop_when_told(self, source: Any) -> None:
        await self.stopping.wait()
        await source.stop()

    async def pump(self, merger: FrameMerger, first_wait: float) -> None:
        """Every merged batch, named and counted, up to the console (the first ones once names came)."""
        waited = False
        async for batch in merger.batches():
            if not waited:
                waited = True
                try:
                    await asyncio.wait_for(self.got_names.wait(), first_wait)
                except TimeoutError:
                    pass
            frames = batch.frames
            if frames and self.names is not None:
                apply_names(frames, self.names)
            header, body = self.encoder.encode(frames)
            table = FlowTable()                 # what this batch adds per flow, counted on its columns (numpy)
            FrameColumns(body, len(frames), self.encoder.strings.table).count_flows(list(range(len(frames))), table)
            header.update(kind="batch", dropped=batch.dropped, malformed=batch.malformed, notices=batch.notices,
                          flows=flows_to_json(table.deltas()), cpu=time.process_time())
            await self.send(header, body)


def _source(config: dict[str, Any], body: bytes) -> Any:
    opts = dict(config.get("opts") or {})
    for k in ("health", "resume"):
        if isinstance(opts.get(k), list):
            opts[k] = tuple(opts[k])
    opts.setdefault("max_batch", MERGE_BATCH)
    if config.get("source") == "flood":
        return FloodSource(config["pcap"], list(config["nodes"]), float(config["rate"]), int(config.get("port", 4789)),
                           **{k: v for k, v in opts.items() if k in ("window", "interval", "max_batch", "max_buffered")})
    from core.capture.remote import LiveCapture
    from core.ssh import SSHPool
    specs = pickle.loads(body)
    return LiveSource(LiveCapture(SSHPool(specs), specs, int(config.get("port", 4789)), **opts))


class LiveSource:
    """The real thing: :class:`LiveCapture` over this process's own SSH connections."""

    def __init__(self, live: Any) -> None:
        self.live = live
        self.merger: FrameMerger = live.merger
        self.stopped = False

    async def start(self) -> None:
        try:
            await self.live.start()
        except OverlayError:
            raise
        except (OSError, ValueError) as e:
            raise CaptureError(f"the capture could not start: {e}") from None

    def where(self) -> str:
        return ", ".join(f"{c.node.name} ({c.plan.interface})" for c in self.live.captures)

    def node_addresses(self) -> dict[str, str]:
        return dict(self.live.node_addresses)

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.live.stop()
            await self.live.pool.close()


_PCAP_HEAD = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
_TS = Struct("<II")
_LENS = Struct("<II")


class FloodSource:
    """``rate`` frames/s of a pcap's records, as one tcpdump byte stream per node, decoded and merged."""

    def __init__(self, pcap: str, nodes: list[str], rate: float, port: int = 4789, **merger_opts) -> None:
        from core.capture.pcap import iter_pcap
        self.records = [(data, wirelen) for _ts, _cap, wirelen, data in iter_pcap(pcap)]
        if not self.records:
            raise CaptureError(f"{pcap}: no frames to flood with")
        self.nodes, self.rate, self.port = nodes, rate, port
        self.merger = FrameMerger(len(nodes), **merger_opts)
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    def where(self) -> str:
        return ", ".join(f"{n} (flood at {self.rate:,.0f} frames/s)" for n in self.nodes)

    def node_addresses(self) -> dict[str, str]:
        return {}

    async def _run(self) -> None:
        decoders = [StreamDecoder(n, self.port) for n in self.nodes]
        for d in decoders:
            d.feed(_PCAP_HEAD)
        tails = [_LENS.pack(len(data), wl) + data for data, wl in self.records]   # a record but its time
        nrec, k, sent = len(tails), 0, 0
        t0 = time.monotonic()
        try:
            while True:
                due = int((time.monotonic() - t0) * self.rate) - sent
                if due < self.rate / 500:
                    await asyncio.sleep(0.002)
                    continue
                now = time.time()
                sec, usec = int(now), int((now % 1) * 1e6)
                per = due // len(decoders) + 1
                stamp = _TS.pack(sec, usec)
                for d in decoders:
                    chunk = [tails[j % nrec] for j in range(k, k + per)]
                    k += per
                    frames, bad = d.feed(stamp + stamp.join(chunk))      # every record stamped with now
                    self.merger.add(frames, bad, d.node)
                sent += per * len(decoders)
                await asyncio.sleep(0)
        finally:
            for n in self.nodes:
                self.merger.source_ended(n)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def _widen_pipe(fd: int) -> None:
    """A bigger pipe to the console (64 KiB by default): fewer wake-ups of both processes per batch, which
    matters on a busy machine where each wake-up waits for a CPU."""
    for size in (PIPE_BYTES, 1 << 20):
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, size)
            return
        except OSError:
            continue


async def _main() -> int:
    proto_out = os.dup(1)
    os.dup2(2, 1)                      # a stray print must never corrupt the protocol on stdout
    _widen_pipe(proto_out)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_MESSAGE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        os.fdopen(proto_out, "wb", buffering=0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        status = await Worker(reader, writer).run()
        for _ in range(200):                            # the last message (end, error) out before exiting
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.01)
        return status
    except (BrokenPipeError, ConnectionError):          # the console is gone: nothing to tell
        return 0
    finally:
        transport.close()


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="capture worker: %(message)s")
    return asyncio.run(_main())


if __name__ == "__main__":
    sys.exit(main())
