"""`trace(src_container, dst)`: marked pings from a container, watched at every point that can be watched.

Path of one echo between containers on two nodes, and where each step is watched:

1. request leaves the source container      tcpdump in the container's network namespace (source node)
2. VXLAN request leaves the source node       the source node's underlay capture
3. VXLAN request arrives at the target node   the target node's underlay capture
4. request reaches the target container       tcpdump in the target container's namespace
5. reply leaves the target container          (same)
6. VXLAN reply leaves the target node         the target node's underlay capture
7. VXLAN reply arrives at the source node     the source node's underlay capture
8. reply reaches the source container         tcpdump in the source container's namespace

Every watcher listens before the first ping is sent. The pings are ``ping -c N -s 1111 -p 5a`` by
``docker exec`` in the source container (it needs a ping: the probe containers have busybox's). A
target that is not a known container gets steps 1, 2 and 8 (and the underlay steps towards whatever
node owns its address, if any). An echo's verdict names the last step seen: where it died.
"""
from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from typing import cast

from core.dockerd.clients import DockerNodes
from core.errors import DockerError, OverlayError, SSHError, UsageError
from core.model import ContainerInfo, FrameBatch, Inventory, NetworkInfo, TraceHop, TraceResult
from core.ssh import RemoteStream, SSHPool
from core.trace.hops import PATTERN, PAYLOAD, Echo, frame_echo, parse_line

TAIL = 1.5                     # after ping ends, how long stragglers may still arrive at the watchers
START_TIMEOUT = 10.0


def _points(src: str, dst: str, src_node: str, dst_node: str) -> list[tuple[int, str, str, str, str]]:
    """(step, point, node, watcher kind, direction) in path order."""
    return [(1, f"request leaves {src}", src_node, "src-ct", "request"),
            (2, f"VXLAN request leaves {src_node}", src_node, "wire-out", "request"),
            (3, f"VXLAN request arrives at {dst_node}", dst_node, "wire-in", "request"),
            (4, f"request reaches {dst}", dst_node, "dst-ct", "request"),
            (5, f"reply leaves {dst}", dst_node, "dst-ct", "reply"),
            (6, f"VXLAN reply leaves {dst_node}", dst_node, "wire-out", "reply"),
            (7, f"VXLAN reply arrives at {src_node}", src_node, "wire-in", "reply"),
            (8, f"reply reaches {src}", src_node, "src-ct", "reply")]


class TraceService:
    """``capture(nodes)`` is the capture part's (underlay frames, named); ``list_networks`` finds containers."""

    def __init__(self, inventory: Inventory, pool: SSHPool, docker: DockerNodes,
                 list_networks: Callable[[], Awaitable[list[NetworkInfo]]],
                 capture: Callable[[list[str]], AsyncIterator[FrameBatch]]) -> None:
        self.inventory, self.pool, self.docker = inventory, pool, docker
        self.list_networks, self.capture = list_networks, capture

    async def _find(self, src: str, dst: str) -> tuple[ContainerInfo, ContainerInfo | None, str]:
        nets = await self.list_networks()
        conts = [c for n in nets if n.driver == "overlay" for c in n.containers]
        s = next((c for c in conts if c.name == src and c.ip), None)
        if s is None:
            known = sorted({c.name for c in conts})
            raise UsageError(f"no container {src!r} on an overlay network; containers: {', '.join(known) or 'none'}")
        same_net = [c for c in conts if c.network == s.network]
        d = next((c for c in same_net if c.name == dst or (c.ip or "").split("/")[0] == dst), None)
        ip = (d.ip or "").split("/")[0] if d else dst
        if d is None and not _is_ipv4(dst):
            raise UsageError(f"{dst!r} is neither a container on {s.network} nor an IPv4 address")
        return s, d, ip

    async def _pid(self, c: ContainerInfo) -> int:
        info = await self.docker.call(c.node, lambda cl: cl.api.inspect_container(c.name))
        pid = int((info.get("State") or {}).get("Pid") or 0)
        if not pid:
            raise DockerError(f"{c.name} on {c.node} is not running")
        return pid

    async def _container_watch(self, c: ContainerInfo, peer: str, pid: int) -> RemoteStream:
        cmd = (f"nsenter -t {pid} -n tcpdump -nn -tt -l -i any "
               f"{shlex.quote(f'icmp and host {peer}')}")
        stream = await self.pool.stream(c.node, cmd)
        err = stream.process.stderr
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = await asyncio.wait_for(err.readline(), max(0.1, deadline - time.monotonic()))
            text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
            if "listening on" in text:
                return stream
            if not text:
                await stream.stop()
                raise OverlayError(f"{c.node}: cannot watch inside {c.name} (nsenter/tcpdump failed)")

    async def trace(self, src: str, dst: str, count: int = 3) -> TraceResult:
        if not 1 <= count <= 20:
            raise UsageError("--count must be 1 to 20")
        s, d, dst_ip = await self._find(src, dst)
        src_ip = (s.ip or "").split("/")[0]
        dst_node = d.node if d else None
        res = TraceResult(src, dst, s.node, dst_node, src_ip, dst_ip)
        seen: dict[tuple[str, str, int], float] = {}          # (watcher@node, kind, seq) -> first ts
        watchers: list[RemoteStream] = []
        readers: list[asyncio.Task] = []
        try:
            for c, peer, tag in ((s, dst_ip, "src-ct"), (d, src_ip, "dst-ct")):
                if c is None:
                    continue
                try:
                    stream = await self._container_watch(c, peer, await self._pid(c))
                except (OverlayError, SSHError, TimeoutError) as e:
                    res.unobservable.append(f"inside {c.name}: {e or 'tcpdump did not start'}")
                    continue
                watchers.append(stream)
                readers.append(asyncio.create_task(_read_lines(stream, tag, seen)))
            if dst_node is None:
                res.unobservable.append(f"{dst} is not a known container: steps at its end are not watched")
            nodes = [s.node] + ([dst_node] if dst_node and dst_node != s.node else [])
            wire_started = asyncio.Event()
            wire = asyncio.create_task(self._watch_wire(nodes, src_ip, dst_ip, seen, wire_started))
            readers.append(wire)
            await asyncio.wait({wire, asyncio.ensure_future(wire_started.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
            if wire.done():
                with suppress(asyncio.CancelledError):
                    exc = wire.exception()
                    if exc is not None:
                        res.unobservable.append(f"underlay: {exc}")
            res.ping_output = await self._ping(s, dst_ip, count)
            await _quiet_for(seen, TAIL)
        finally:
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for w in watchers:
                await w.stop()
        self._fill(res, seen, count, same_node=dst_node == s.node)
        return res

    async def _watch_wire(self, nodes: list[str], src_ip: str, dst_ip: str,
                          seen: dict[tuple[str, str, int], float], started: asyncio.Event) -> None:
        gen = cast(AsyncIterator[FrameBatch], self.capture(nodes))
        async with aclosing(gen) as batches:  # type: ignore[type-var]
            async for batch in batches:
                started.set()
                for f in batch.frames:
                    e = frame_echo(f)
                    if e is None or {e.src, e.dst} != {src_ip, dst_ip}:
                        continue
                    where = "wire-out" if f.node == f.outer_src_name else "wire-in" if f.node == f.outer_dst_name else ""
                    if where:
                        seen.setdefault((f"{where}@{f.node}", e.kind, e.seq), f.ts)

    async def _ping(self, s: ContainerInfo, dst_ip: str, count: int) -> str:
        argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "1", "-s", str(PAYLOAD), "-p", PATTERN, dst_ip]

        def run(cl) -> str:
            ex = cl.api.exec_create(s.name, argv)
            return cl.api.exec_start(ex["Id"]).decode(errors="replace")
        try:
            return await self.docker.call(s.node, run)
        except OverlayError as e:
            raise DockerError(f"cannot ping from {s.name} on {s.node}: {e}") from None

    def _fill(self, res: TraceResult, seen: dict[tuple[str, str, int], float], count: int, same_node: bool) -> None:
        dst_node = res.dst_node or "?"
        points = _points(res.src, res.dst, res.src_node, dst_node)
        if same_node:
            points = [p for p in points if not p[3].startswith("wire")]
        for seq in range(count):
            last = None
            for step, point, node, kind, direction in points:
                ts = seen.get((f"{kind}@{node}" if kind.startswith("wire") else kind, direction, seq))
                res.hops.append(TraceHop(seq, step, point, node, ts))
                if ts is not None:
                    last = (step, point, ts)
            first = next((h for h in res.hops if h.seq == seq and h.ts is not None), None)
            if last is None:
                res.verdicts.append(f"echo {seq}: seen nowhere (did the ping run? see its output)")
            elif last[0] == points[-1][0]:
                rtt = (last[2] - first.ts) * 1000 if first and first.ts is not None else 0.0
                res.verdicts.append(f"echo {seq}: back in {res.src} after {rtt:.3f} ms")
            else:
                nxt = next((p[1] for p in points if p[0] > last[0]), "")
                res.verdicts.append(f"echo {seq}: last seen at step {last[0]} ({last[1]}); lost before: {nxt}")


async def _read_lines(stream: RemoteStream, tag: str, seen: dict[tuple[str, str, int], float]) -> None:
    buf = b""
    async for chunk in stream.chunks():
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            e: Echo | None = parse_line(raw.decode(errors="replace"))
            if e is not None:
                seen.setdefault((tag, e.kind, e.seq), e.ts)


async def _quiet_for(seen: dict, seconds: float) -> None:
    """Wait until nothing new was seen for ``seconds`` (bounded: at most 4x that)."""
    end = time.monotonic() + 4 * seconds
    n, last_change = len(seen), time.monotonic()
    while time.monotonic() < end and time.monotonic() - last_change < seconds:
        await asyncio.sleep(0.1)
        if len(seen) != n:
            n, last_change = len(seen), time.monotonic()


def _is_ipv4(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)
