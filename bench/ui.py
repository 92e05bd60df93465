"""Benchmark: the capture pane under a flood of frames, in the real console, headless.

A synthetic service replays a generated pcap at RATE frames/s (default 100,000) into the real console
(tui.app.OverlayApp on the recorded lab state, 120x36) whose capture pane consumes it, two ways:

  - worker (the live capture's default): core's capture worker process (core.capture.worker, source
    "flood") turns the pcap's records into one tcpdump byte stream per node, decodes, merges, names and
    counts flows there, exactly as it does with the nodes' streams, and sends columnar batches with their
    flow counts to the console (core.capture.offload);
  - in-process (OVERLAY_TUI_CAPTURE_WORKER=0): every batch is decoded (core.capture.decode) and named
    (core.capture.names) in the console's own process, and the pane counts flows itself. When the
    console falls behind, the producer drops the excess and says so in the batch.

For each it prints the console process's CPU and (worker) the worker process's CPU, side by side, and:

  - frames/s absorbed by the pane (offered, absorbed, dropped at the source, evicted by the ring);
  - key-to-redraw latency: a key (up/down/pageup/end) is pressed every ~150 ms; the time from the
    press to the first repaint of the frame list after the key was handled (median, p95, max);
  - memory: RSS and the ring's length every 2 s (bounded once the ring is full), and a short
    tracemalloc run at the end (it slows allocation, so it is not part of the rate);
  - time from start to the first full paint (FirstPaint) of the console on recorded state, or on a
    lab with ``--inventory FILE`` (a live LiveService).

    .venv/bin/python bench/ui.py [--seconds 10] [--rate 100000] [--inventory FILE] [--path worker|inprocess|both]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from struct import pack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.capture.decode import VxlanDecoder  # noqa: E402
from core.capture.names import apply_names  # noqa: E402
from core.capture.offload import WorkerCapture  # noqa: E402
from core.capture.pcap import PcapWriter, iter_pcap  # noqa: E402
from core.model import FrameBatch  # noqa: E402
from core.recorded.service import RecordedService  # noqa: E402

STATE = ROOT / "tests" / "fixtures" / "lab_state.json"
NODES = ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
INNER = {256: ["198.19.0.2", "198.19.0.3", "198.19.0.4"], 257: ["198.19.1.2", "198.19.1.3", "198.19.1.9"]}
SNAPLEN = 128


# --- a generated pcap ---------------------------------------------------------------------------
def _ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, _ip(src), _ip(dst)) + payload


def vxlan_frame(i: int) -> bytes:
    """One VXLAN frame: node pair, VNI, inner pair and protocol vary with ``i``."""
    s, d = NODES[i % 3], NODES[(i + 1) % 3]
    vni = 256 if i % 4 else 257
    hosts = INNER[vni]
    isrc, idst = hosts[i % 3], hosts[(i + 2) % 3]
    kind = i % 10
    if kind < 4:
        l4, proto = pack("!BBHHH", 8 if i % 2 else 0, 0, 0, 1, i & 0xFFFF) + b"x" * 56, 1
    elif kind < 7:
        l4, proto = pack("!HHIIBBHHH", 40000 + i % 1000, 80, i, 0, 0x50, 0x18, 502, 0, 0) + b"y" * (i % 1400), 6
    elif kind < 9:
        body = b"z" * (i % 512)
        l4, proto = pack("!HHHH", 5000 + i % 7, 53, 8 + len(body), 0) + body, 17
    else:
        l4, proto = b"", 0
    mac_s, mac_d = b"\x02\x42\xc6\x13\x00" + bytes([i % 3 + 2]), b"\x02\x42\xc6\x13\x00" + bytes([(i + 2) % 3 + 2])
    if proto:
        inner = mac_d + mac_s + b"\x08\x00" + _ipv4(isrc, idst, proto, l4)
    else:
        arp = pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac_s, _ip(isrc), b"\0" * 6, _ip(idst))
        inner = b"\xff" * 6 + mac_s + b"\x08\x06" + arp
    vx = pack("!BBHI", 0x08, 0, 0, vni << 8)
    udp = pack("!HHHH", 40000 + i % 20000, 4789, 8 + len(vx) + len(inner), 0) + vx + inner
    return b"\x02\x00\xc6\x12\x00\x02\x02\x00\xc6\x12\x00\x01\x08\x00" + _ipv4(s, d, 17, udp)


def generate_pcap(path: Path, n: int = 20_000) -> list[tuple[bytes, int]]:
    """Write ``n`` frames (snap length 128, as the live capture takes them); return (data, wire_len)."""
    with PcapWriter(path, snaplen=SNAPLEN) as w:
        for i in range(n):
            raw = vxlan_frame(i)
            w.write(1_764_000_000 + i * 1e-5, raw, len(raw))
    return [(data, wirelen) for _ts, _cap, wirelen, data in iter_pcap(path)]


# --- the flood ------------------------------------------------------------------------------------
class FloodService(RecordedService):
    """Recorded lab state whose capture is a flood of ``rate`` frames/s decoded from ``records``."""

    records: list[tuple[bytes, int]] = []
    rate = 100_000
    max_batch = 2_000
    backlog = 1.0               # seconds of frames held for a slow consumer before dropping

    async def capture(self, nodes: list[str], **_opts) -> AsyncIterator[FrameBatch]:
        names = await self.names()
        decoder = VxlanDecoder()
        decode, recs, nrec = decoder.decode, self.records, len(self.records)
        t0 = time.monotonic()
        self.offered = self.delivered = self.dropped = 0
        self.decode_cpu = 0.0
        self.offered_for = 1e-9
        k = 0
        while True:
            due = int((time.monotonic() - t0) * self.rate) - self.offered
            if due < self.rate // 200:                      # less than 5 ms worth: let the UI run
                await asyncio.sleep(0.005)
                continue
            dropped = max(0, due - int(self.backlog * self.rate))
            n = min(due - dropped, self.max_batch)
            self.offered += dropped + n
            self.dropped += dropped
            k += dropped
            now = time.time()
            c0 = time.thread_time()
            frames = []
            for j in range(k, k + n):
                data, wl = recs[j % nrec]
                frames.append(decode(data, now, wl, nodes[j % len(nodes)]))
            k += n
            apply_names(frames, names)
            self.decode_cpu += time.thread_time() - c0
            self.delivered += n
            self.offered_for = time.monotonic() - t0
            yield FrameBatch(frames, dropped=dropped)
            await asyncio.sleep(0)


class WorkerFloodService(RecordedService):
    """Recorded lab state whose capture is the capture worker process flooding ``rate`` frames/s of ``pcap``."""

    pcap = ""
    rate = 100_000

    async def capture(self, nodes: list[str], **_opts) -> AsyncIterator[FrameBatch]:
        self.offered = self.dropped = 0
        self.decode_cpu = float("nan")
        work = WorkerCapture({"source": "flood", "pcap": self.pcap, "nodes": nodes, "rate": self.rate,
                              "first_wait": 0.5})
        self.worker = work
        try:
            await work.start()
            names = await self.names()
            await work.send_names(names)
            t0 = time.monotonic()
            yield FrameBatch([], notices=[f"capturing on {work.where}"], names=names)
            async for batch in work.batches():
                self.dropped += batch.dropped
                self.offered_for = time.monotonic() - t0
                self.offered = int(self.offered_for * self.rate)
                yield batch
        finally:
            await work.close()


async def _worker_gone(service: object, seconds: float = 15.0) -> None:
    """Wait (bounded) until a stopped capture's worker process has exited, before the app's loop closes."""
    work = getattr(service, "worker", None)
    deadline = time.monotonic() + seconds
    while work is not None and work.proc is not None and work.proc.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def flood(seconds: float, rate: int, kind: str = "worker") -> dict:
    from textual import events

    from tui.app import OverlayApp
    from tui.capture.frame_list import FrameList
    from tui.capture.pane import CapturePane

    renders: list[float] = []
    handled: list[float] = []
    orig_render, orig_move = FrameList.render_line, FrameList._move

    cpu = {"render": 0.0, "absorb": 0.0, "lines": 0}
    repainted = asyncio.Event()          # set by each repaint of the list's first line (no polling: no CPU of ours)

    def render_line(self, y):
        c0 = time.thread_time()
        strip = orig_render(self, y)
        cpu["render"] += time.thread_time() - c0
        cpu["lines"] += 1
        if y == 0:
            renders.append(time.perf_counter())
            repainted.set()
        return strip

    orig_absorb = CapturePane.absorb

    def absorb(self, batch):
        c0 = time.thread_time()
        orig_absorb(self, batch)
        cpu["absorb"] += time.thread_time() - c0

    CapturePane.absorb = absorb

    def move(self, delta):
        orig_move(self, delta)
        handled.append(time.perf_counter())

    FrameList.render_line, FrameList._move = render_line, move
    orig_follow = FrameList.action_follow

    def follow(self):
        orig_follow(self)
        handled.append(time.perf_counter())

    FrameList.action_follow = follow

    service: FloodService | WorkerFloodService = (WorkerFloodService if kind == "worker" else FloodService).load(STATE)
    service.rate = rate
    app = OverlayApp(service, watch=False)
    out: dict = {"memory": [], "latency": []}
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        pane = app.query_one(CapturePane)
        pane.frame_list.focus()
        gc.collect()
        out["memory"].append((0.0, rss_mb(), 0))
        pane.start_capture(["docker-node1", "docker-node2", "docker-node3"])
        if kind == "worker":                       # the clock starts once the worker floods
            while getattr(service, "worker", None) is None or service.worker.pid is None or not len(pane.ring):
                await asyncio.sleep(0.05)
        wpid = service.worker.pid if kind == "worker" else None
        t0 = time.perf_counter()
        cpu0, wcpu0, total0 = time.process_time(), proc_cpu(wpid), pane.ring.total
        next_mem = 2.0
        keys = ["up", "down", "pageup", "up", "end", "filter"]
        filters = ["vni=256 proto=icmp", ""]
        i = 0
        while (el := time.perf_counter() - t0) < seconds:
            await asyncio.sleep(0.15)
            n_handled = len(handled)
            key = keys[i % len(keys)]
            i += 1
            t_key = time.perf_counter()
            if key == "filter":                # what Enter in the filter box does: rebuild the index, redraw
                key = f"filter '{filters[0]}'" if filters[0] else "filter off"
                pane.apply_filter(filters[0])
                filters.reverse()
                handled.append(time.perf_counter())
            else:
                app._driver.send_message(events.Key(key, None))   # as a terminal's driver delivers it
            deadline = t_key + 2.0
            while (left := deadline - time.perf_counter()) > 0:
                if len(handled) > n_handled and renders and renders[-1] > handled[n_handled]:
                    out["latency"].append((key, renders[-1] - t_key))
                    break
                repainted.clear()
                try:
                    await asyncio.wait_for(repainted.wait(), min(left, 0.05))
                except TimeoutError:
                    pass
            if el >= next_mem:
                out["memory"].append((round(el, 1), rss_mb(), len(pane.ring)))
                next_mem += 2.0
        elapsed = time.perf_counter() - t0
        out.update(process_cpu=time.process_time() - cpu0, decode_cpu=service.decode_cpu, **cpu,
                   worker_cpu=proc_cpu(wpid) - wcpu0 if wpid else None, absorbed_timed=pane.ring.total - total0)
        out.update(elapsed=elapsed, total=pane.ring.total, held=len(pane.ring), evicted=pane.ring.dropped,
                   offered=service.offered, producer_for=service.offered_for,
                   due=int(service.offered_for * service.rate),
                   source_dropped=service.dropped, renders=len(renders),
                   capacity=pane.ring.capacity)
        pane.action_stop()
        await pilot.pause()
        await _worker_gone(service)
        # a short tracemalloc look at what one more second of flood allocates (slows things: not timed)
        tracemalloc.start()
        pane.start_capture(["docker-node1"])
        snap0 = tracemalloc.take_snapshot()
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < 1.5:
            await asyncio.sleep(0.1)
        cur, peak = tracemalloc.get_traced_memory()
        out["tracemalloc"] = (cur / 1e6, peak / 1e6, len(pane.ring))
        del snap0
        tracemalloc.stop()
        pane.action_stop()
        await pilot.pause()
        await _worker_gone(service)
    FrameList.render_line, FrameList._move, FrameList.action_follow = orig_render, orig_move, orig_follow
    CapturePane.absorb = orig_absorb
    return out


async def console_floor(seconds: float, rate: int) -> tuple[float, float, float]:
    """(console CPU share with no capture, with the worker capture at ``rate`` and no keys, frames/s absorbed)."""
    from tui.app import OverlayApp
    from tui.capture.pane import CapturePane

    out = []
    for capture in (False, True):
        service = WorkerFloodService.load(STATE)
        service.rate = rate
        app = OverlayApp(service, watch=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            pane = app.query_one(CapturePane)
            pane.frame_list.focus()
            if capture:
                pane.start_capture(["docker-node1", "docker-node2", "docker-node3"])
                while not len(pane.ring):
                    await asyncio.sleep(0.05)
            c0, t0, n0 = time.process_time(), time.perf_counter(), pane.ring.total
            await asyncio.sleep(seconds)
            el = time.perf_counter() - t0
            out += [(time.process_time() - c0) / el, (pane.ring.total - n0) / el]
            if capture:
                pane.action_stop()
            await pilot.pause()
            await _worker_gone(service)
    return out[0], out[2], out[3]


async def first_paint(inventory: str | None) -> tuple[str, float, float]:
    """(where, seconds from OverlayApp() to FirstPaint, seconds including opening the service)."""
    from tui.app import OverlayApp
    from tui.messages import FirstPaint

    t0 = time.perf_counter()
    if inventory:
        from core.live import LiveService
        service, where = LiveService.open(inventory), f"lab ({inventory})"
    else:
        service, where = RecordedService.load(STATE), "recorded state"
    app = OverlayApp(service, watch=False)
    seen: list[FirstPaint] = []
    async with app.run_test(size=(120, 36), message_hook=lambda m: seen.append(m) if isinstance(m, FirstPaint) else None) as pilot:
        for _ in range(3000):
            if seen:
                break
            await asyncio.sleep(0.005)
        total = time.perf_counter() - t0
        await pilot.pause()
    if not seen:
        return where, float("nan"), float("nan")
    return where, seen[0].seconds, total


def filter_costs(records: list[tuple[bytes, int]], n: int = 100_000) -> list[tuple[str, float, float, int]]:
    """(filter, ms to rebuild the index over n frames, us per frame to test, matches) for a few filters."""
    from tui.capture.filter import parse_filter
    from tui.capture.frame_ring import FilteredIndex, FrameRing

    dec = VxlanDecoder()
    ring: FrameRing = FrameRing(n)
    frames = [dec.decode(records[i % len(records)][0], 0.0, records[i % len(records)][1], "docker-node1")
              for i in range(n)]
    apply_names(frames, _names())
    ring.extend(frames)
    out = []
    for text in ("proto=icmp", "vni=256 proto=icmp", "host=probe-docker-node2", "host=198.19.0.0/24 proto!=tcp"):
        index = FilteredIndex(parse_filter(text).predicate)
        t = time.perf_counter()
        index.rebuild(ring)
        el = time.perf_counter() - t
        out.append((text, el * 1000, el / n * 1e6, len(index)))
    return out


def _names():
    return asyncio.run(RecordedService.load(STATE).names())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=100_000, help="frames/s offered (default 100000)")
    ap.add_argument("--inventory", help="measure first paint on this inventory's live nodes (e.g. a lab)")
    ap.add_argument("--path", choices=("worker", "inprocess", "both"), default="both",
                    help="where the capture decodes: its worker process, the console's process, or both in turn")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> int:
    t = time.perf_counter()
    FloodService.records = generate_pcap(tmp / "flood.pcap")
    WorkerFloodService.pcap = str(tmp / "flood.pcap")
    print(f"generated {len(FloodService.records):,} VXLAN frames in {time.perf_counter() - t:.1f} s "
          f"(replayed in a loop, decoded on the fly by core.capture.decode)")

    print("\nfilter index over 100,000 frames (rebuilt when the filter changes; new batches cost the same per frame):")
    for text, ms, us, hits in filter_costs(FloodService.records):
        print(f"  {text:<32} rebuild {ms:6.1f} ms  ({us:.2f} us/frame)  {hits:>7,} match")
    print("  (filtering on the fly per visible window would rescan up to the whole ring on every repaint when "
          "matches are rare: the index costs the same per frame once)")

    where, app_s, total_s = asyncio.run(first_paint(args.inventory))
    print(f"\nfirst full paint on {where}: {app_s * 1000:.0f} ms from OverlayApp() to FirstPaint, "
          f"{total_s * 1000:.0f} ms including opening the service")

    kinds = ["worker", "inprocess"] if args.path == "both" else [args.path]
    results = {}
    for kind in kinds:
        print(f"\nflooding the capture pane at {args.rate:,} frames/s for {args.seconds:.0f} s, {LABELS[kind]} "
              f"(OverlayApp, 120x36, headless)...")
        results[kind] = r = asyncio.run(flood(args.seconds, args.rate, kind))
        report(r, args.rate, kind)
    if "worker" in kinds:
        idle, floor, got = asyncio.run(console_floor(min(6.0, args.seconds), args.rate))
        print(f"\nthe console's floor (no keys pressed, 6 s each): {idle:.1%} of a core with no capture, {floor:.1%} "
              f"with the worker capture at {args.rate:,} frames/s ({got:,.0f}/s absorbed)")
    if len(results) > 1:
        print(f"\nside by side at {args.rate:,} frames/s offered (CPU as % of one core over the timed "
              f"{args.seconds:.0f} s; 2 shared cores, load {os.getloadavg()[0]:.1f} now):")
        print(f"  {'path':<44} {'console':>8} {'worker':>8} {'absorbed/s':>11}")
        for kind, r in results.items():
            w = "-" if r["worker_cpu"] is None else f"{r['worker_cpu'] / r['elapsed']:.0%}"
            print(f"  {LABELS[kind]:<44} {r['process_cpu'] / r['elapsed']:>8.0%} {w:>8} "
                  f"{r['absorbed_timed'] / r['elapsed']:>11,.0f}")
    return 0


LABELS = {"worker": "worker process (default)", "inprocess": "in the console's process (OVERLAY_TUI_CAPTURE_WORKER=0)"}


def report(r: dict, rate: int, kind: str) -> None:
    el = r["elapsed"]
    if kind == "worker":
        print(f"  absorbed         {r['absorbed_timed']:>12,} frames in the timed {el:.1f} s "
              f"({r['absorbed_timed'] / el:>10,.0f}/s; the worker floods at {rate:,}/s)")
        print(f"  dropped at source{r['source_dropped']:>12,} frames  (the worker's merge buffer, 100k frames, overflowed)")
    else:
        behind = max(0, r["due"] - r["offered"])
        print(f"  offered          {r['due']:>12,} frames  ({r['due'] / r['producer_for']:>10,.0f}/s)")
        print(f"  absorbed         {r['total']:>12,} frames  ({r['total'] / r['producer_for']:>10,.0f}/s)")
        print(f"  still due        {behind:>12,} frames  (the backlog when it stopped: the console's lag)")
        print(f"  dropped at source{r['source_dropped']:>12,} frames  (backlog beyond 1 s of frames is dropped)")
    print(f"  ring             {r['held']:>12,} held of {r['capacity']:,}; {r['evicted']:,} evicted (oldest first)")
    print(f"  list repaints    {r['renders']:>12,}  ({r['renders'] / el:.1f}/s)")
    n = max(1, r["absorbed_timed"])
    print(f"\nCPU: the console process used {r['process_cpu']:.1f} s of CPU in {el:.1f} s ({r['process_cpu'] / el:.0%} "
          f"of one core; the machine is shared, load {os.getloadavg()[0]:.1f})")
    if r["worker_cpu"] is not None:
        print(f"  the worker process used {r['worker_cpu']:.1f} s ({r['worker_cpu'] / el:.0%} of one core): capture "
              f"streams, decode, merge, names, flows, columns")
    else:
        print(f"  decode + name (core, in the producer) {r['decode_cpu'] / n * 1e6:6.2f} us/frame")
    print(f"  pane absorb (ring + index + flows)    {r['absorb'] / n * 1e6:6.2f} us/frame")
    print(f"  list render_line                      {r['render'] / max(1, r['lines']) * 1e6:6.1f} us/line, "
          f"{r['render'] / max(1, r['renders']) * 1e3:.2f} ms per repaint")
    print(f"  absorbed per console CPU second       {n / max(1e-9, r['process_cpu']):>9,.0f} frames")
    lat = [v * 1000 for k, v in r["latency"] if not k.startswith("filter")]
    flt = [v * 1000 for k, v in r["latency"] if k.startswith("filter")]
    if lat:
        print(f"\nkey-to-redraw latency over {len(lat)} presses (up/down/pageup/end, under the flood):")
        print(f"  median {statistics.median(lat):.1f} ms   p95 {pct(lat, 95):.1f} ms   max {max(lat):.1f} ms   "
              f"(target < 100 ms)")
    else:
        print("\nkey-to-redraw latency: no repaint seen after a key")
    if flt:
        print(f"filter apply/clear to redraw over {len(flt)} toggles (index rebuilt over the full ring):")
        print(f"  median {statistics.median(flt):.1f} ms   p95 {pct(flt, 95):.1f} ms   max {max(flt):.1f} ms")
    print("\nmemory while flooding (RSS, ring length):")
    for el_s, mb, held in r["memory"]:
        print(f"  t={el_s:>5.1f} s   RSS {mb:7.1f} MB   ring {held:>8,}")
    cur, peak, held = r["tracemalloc"]
    print(f"  tracemalloc over 1.5 s more of flood: {cur:.1f} MB traced now, peak {peak:.1f} MB (ring {held:,})")


if __name__ == "__main__":
    sys.exit(main())
