"""The capture part of the live service: live capture, replay, names, flows, pcap.

``capture(nodes)`` streams :class:`FrameBatch` objects from a remote tcpdump on each node
(:mod:`core.capture.remote`), merged in time order and named (:mod:`core.capture.names`). By default all
of that runs in a worker process (:mod:`core.capture.worker`, driven by :mod:`core.capture.offload`) that
also counts each batch's flows: this process only reads batches in columns. ``in_process=True`` (or
``OVERLAY_TUI_CAPTURE_WORKER=0``) runs it here instead. Closing the async generator (or cancelling its
consumer) stops every remote tcpdump (and the worker).
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from core import checks
from core.access import WriteGuard
from core.capture.decode import VxlanDecoder
from core.capture.names import apply_names, build_names
from core.capture.offload import WorkerCapture
from core.capture.pcap import PcapFileReader
from core.capture.remote import LiveCapture
from core.capture.tools import FrameTools
from core.errors import OverlayError
from core.files import SaveArea
from core.model import FlowStat, Frame, FrameBatch, FrameDetail, Inventory, Names, NetworkInfo, NodeSpec, SaveTarget
from core.ssh import SSHPool

NAMES_REFRESH = 10.0          # seconds between re-reads of networks/containers during a capture
NAMES_TIMEOUT = 8.0           # a replay waits this long at most for names from the nodes
NAMES_FIRST_WAIT = 3.0        # a live capture holds its first frames this long at most for names
REPLAY_BATCH = 2000
WORKER_ENV = "OVERLAY_TUI_CAPTURE_WORKER"     # "0": capture and decode in this process (the old path)


class CaptureService:
    """Capture methods of the live service. ``list_networks`` (the Docker part's) names VNIs and containers."""

    def __init__(self, inventory: Inventory, pool: SSHPool,
                 list_networks: Callable[[], Awaitable[list[NetworkInfo]]], saves: SaveArea | None = None) -> None:
        """``saves`` says where saved pcaps may go (the service's; a local, writable area when not given)."""
        self.inventory, self.pool, self.list_networks = inventory, pool, list_networks
        self.saves = saves or SaveArea(WriteGuard())
        self.tools = FrameTools(inventory.cluster.vxlan_port, self.saves)
        self.node_addresses: dict[str, str] = {}     # underlay address -> node, learnt by live captures
        self.last_names: Names | None = None          # the names last read, for flows
        self.worker: WorkerCapture | None = None      # the latest capture's worker process (benchmarks read its CPU)

    def capture_nodes(self, nodes: list[str] | None) -> list[NodeSpec]:
        """The inventory entries of ``nodes`` (all when empty); an unknown name is a usage error."""
        return checks.nodes(self.inventory, nodes)

    async def names(self) -> Names:
        """VNI -> network, container IP/MAC -> container@node, underlay IP -> node."""
        nets = await self.list_networks()
        self.last_names = build_names(self.inventory, nets, self.node_addresses)
        return self.last_names

    async def names_or_notice(self, timeout: float | None = None) -> tuple[Names, str | None]:
        try:
            return await asyncio.wait_for(self.names(), timeout), None
        except (OverlayError, OSError, TimeoutError) as e:  # names are a nicety: never let them stop a capture
            why = (str(e) if isinstance(e, (OverlayError, OSError)) else "") or f"no answer within {timeout:g} s"
            return build_names(self.inventory, [], self.node_addresses), \
                f"names unavailable (raw values shown): {why}"

    async def capture(self, nodes: list[str], **opts) -> AsyncIterator[FrameBatch]:
        """Live frames of ``nodes`` (every node when empty), time-ordered, named, in bounded batches.

        ``opts`` go to :class:`core.capture.remote.LiveCapture` (``window``, ``interval``, ``max_batch``,
        ``max_buffered``, ``snaplen``, ``health``). The first batch has no frames: its notice says
        where the capture runs, and it comes once every remote tcpdump listens.
        """
        specs = self.capture_nodes(nodes)
        in_process = opts.pop("in_process", None)
        if in_process is None:
            in_process = os.environ.get(WORKER_ENV, "1") == "0"
        if not in_process:
            async with aclosing(self._capture_in_worker(specs, opts)) as batches:   # closing this closes that
                async for batch in batches:
                    yield batch
            return
        live = LiveCapture(self.pool, specs, self.inventory.cluster.vxlan_port, **opts)
        namer = _Namer(self)
        try:
            await live.start()
            self.node_addresses.update(live.node_addresses)
            on = ", ".join(f"{c.node.name} ({c.plan.interface})" for c in live.captures)
            yield FrameBatch([], notices=[f"capturing on {on}"])
            async for batch in live.merger.batches():
                names, problem = await namer.current()
                apply_names(batch.frames, names)
                if problem:
                    batch.notices.insert(0, problem)
                yield batch
        finally:
            namer.close()
            await live.stop()

    async def _capture_in_worker(self, specs: list[NodeSpec], opts: dict) -> AsyncGenerator[FrameBatch, None]:
        """The capture run by a worker process: batches in columns, with their flows; names sent down."""
        config = {"port": self.inventory.cluster.vxlan_port, "first_wait": NAMES_FIRST_WAIT,
                  "opts": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()}}
        work = WorkerCapture(config, specs)
        self.worker = work
        namer = _Namer(self)
        try:
            await work.start()
            self.node_addresses.update(work.node_addresses)
            names, problem = await namer.current()
            await work.send_names(names)
            sent = names
            yield FrameBatch([], notices=[f"capturing on {work.where}"] + ([problem] if problem else []), names=names)
            async for batch in work.batches():
                names, problem = await namer.current()
                if names is not sent:
                    await work.send_names(names)
                    sent = batch.names = names
                if problem:
                    batch.notices.insert(0, problem)
                yield batch
        finally:
            namer.close()
            await work.close()

    async def replay(self, path: str) -> AsyncIterator[FrameBatch]:
        """Frames of a pcap file in batches, decoded and named like a live capture (node "")."""
        reader = PcapFileReader(path)
        records = iter(reader)
        first = await asyncio.to_thread(next, records, None)      # a bad file fails here, before names
        names, problem = await self.names_or_notice(NAMES_TIMEOUT)
        decoder = VxlanDecoder(self.inventory.cluster.vxlan_port)
        decode = decoder.decode
        notices = [problem] if problem else []
        pending = [first] if first is not None else []
        done = first is None
        while not done or pending:
            if not done:
                chunk = await asyncio.to_thread(_take, records, REPLAY_BATCH - len(pending))
                done = len(chunk) < REPLAY_BATCH - len(pending)
                pending.extend(chunk)
            bad = decoder.malformed + decoder.not_vxlan
            frames = [decode(data, ts, wirelen) for ts, _cap, wirelen, data in pending]
            pending = []
            apply_names(frames, names)
            if done and reader.truncated:
                notices.append(reader.truncated)
            yield FrameBatch(frames, malformed=decoder.malformed + decoder.not_vxlan - bad, notices=notices)
            notices = []

    def frame_detail(self, frame: Frame) -> FrameDetail:
        return self.tools.detail(frame)

    def flows(self, frames: list[Frame]) -> list[FlowStat]:
        """Per-flow counters of ``frames`` (named with the names last read, if any)."""
        return self.tools.flows(frames, self.last_names)

    def save_target(self, name: str) -> SaveTarget:
        return self.tools.save_target(name)

    async def save_pcap(self, frames: list[Frame], path: str, *, replace: bool = False) -> int:
        return await self.tools.save_pcap(frames, path, replace=replace)


def _take(records, n: int) -> list:
    out = []
    for rec in records:
        out.append(rec)
        if len(out) >= n:
            break
    return out


class _Namer:
    """The names a live capture applies: the first answer is awaited briefly (so the first frames are
    named without holding the stream back when a node is slow), then re-read in the background."""

    def __init__(self, service: CaptureService, first_wait: float = NAMES_FIRST_WAIT,
                 every: float = NAMES_REFRESH) -> None:
        self.service, self.every = service, every
        self.names = build_names(service.inventory, [], service.node_addresses)
        self.task: asyncio.Task | None = asyncio.create_task(service.names_or_notice())
        self.deadline = time.monotonic() + first_wait
        self.read_at = time.monotonic()
        self.told = False

    async def current(self) -> tuple[Names, str | None]:
        """Names to apply now, and a notice the first time they could not be read."""
        now = time.monotonic()
        if self.task is None:
            if now - self.read_at > self.every:
                self.task, self.read_at = asyncio.create_task(self.service.names_or_notice()), now
            return self.names, None
        if not self.task.done() and now < self.deadline:
            await asyncio.wait({self.task}, timeout=self.deadline - now)
        if not self.task.done():
            return self.names, None
        names, problem = self.task.result()
        self.task, self.read_at = None, time.monotonic()
        addrs = self.service.node_addresses
        names.nodes.update({a: n for a, n in addrs.items() if a not in names.nodes})
        self.names = names
        if problem and not self.told:
            self.told = True
            return names, problem
        return names, None

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
