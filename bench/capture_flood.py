"""Benchmark: the highest flood rate between two probes that the live capture keeps up with.

A UDP flood goes from the probe on docker-node1 to the probe on docker-node2 over the overlay (a
paced Python sender and a counting sink, run with nsenter in the probes' network namespaces on the
nodes: busybox has no rate-controlled sender). Meanwhile ``service.capture()`` runs on both nodes'
underlay, exactly as the console and the CLI use it, and counts the flood's frames per node. Each
step raises the rate; a step is kept up with when the sending node's decoded frames equal the
packets sent, the receiving node's cover every packet that reached it (the sink's count), and
nothing was dropped by our bounded buffer.
Prints one row per step (with the lag from the wire to the consumer, per frame: the nodes' clocks
are this machine's in the lab) and the highest rate kept up with.

On a small shared machine the overlay's own kernel path (and a Python sender) often tops out before
the capture does; ``--underlay`` then floods VXLAN-shaped UDP node to node (a VNI no network uses,
inner addresses in the lab range, dropped by the receiving kernel) to find the capture's ceiling.

    .venv/bin/python bench/capture_flood.py [--inventory FILE] [--rates 1000,2000,...] [--seconds 3]
                                            [--senders 2] [--underlay]

Without --inventory it brings up its own 2-node lab, applies the runbook and tears it down after.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import time
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.live import LiveService

PORT = 9999
RATES = "1000,2000,5000,10000,20000,40000,80000"
SENDER = """
import socket, sys, time
rate, dur, dst, size = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, %d))
msg = b"f" * size
sent = err = 0
t0 = time.perf_counter()
end = t0 + dur
while True:
    now = time.perf_counter()
    if now >= end:
        break
    due = int((now - t0) * rate)
    while sent < due:
        try:
            s.send(msg)
            sent += 1
        except OSError:
            err += 1
            break
    time.sleep(0.0002)
print(sent, err, round(time.perf_counter() - t0, 3))
""" % PORT
UNDERLAY_VNI = 0xFFFFF0        # no network has it: the receiving kernel drops these after the capture saw them
# the inner frame of an underlay-mode packet: Ethernet + IPv4 + UDP to PORT (addresses in the lab range)
INNER = (bytes.fromhex("02420000aa0202420000aa010800") + bytes.fromhex("4500005c0000400040110000c613fe01c613fe02")
         + PORT.to_bytes(2, "big") * 2 + bytes.fromhex("00480000"))
SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", %d))
s.settimeout(0.5)
end = time.time() + float(sys.argv[1])
n = 0
print("ready", flush=True)
while time.time() < end:
    try:
        s.recv(2048)
        n += 1
    except socket.timeout:
        pass
print(n)
""" % PORT


def in_probe(pid: int, code: str, *args) -> str:
    """A command running Python ``code`` in the network namespace of the container with ``pid``."""
    return f"nsenter -t {pid} -n python3 -c {shlex.quote(code)} " + " ".join(shlex.quote(str(a)) for a in args)


async def probe_pids(svc, net) -> dict[str, tuple[int, str]]:
    """node -> (pid of its probe container, the probe's overlay IP)."""
    out = {}
    for c in net.containers:
        if c.name.startswith("probe-") and c.ip:
            res = await svc.pool.run(c.node, f"docker inspect -f '{{{{.State.Pid}}}}' {shlex.quote(c.name)}", check=True)
            out[c.node] = (int(res.stdout.strip()), c.ip.split("/")[0])
    return out


def underlay_sender(svc, node: str) -> tuple[str, str]:
    """(Python code, argv prefix) sending VXLAN-shaped UDP to ``node``'s port 4789 from the sender's node."""
    header = (0x08 << 24).to_bytes(4, "big") + (UNDERLAY_VNI << 8).to_bytes(4, "big")
    code = SENDER.replace("msg = b\"f\" * size", f"msg = {header + INNER!r}").replace(f", {PORT}))", ", 4789))")
    return code, svc.inventory.node(node).advertise


async def one_step(svc, vni: int, src, dst, rate: int, seconds: float, size: int, senders: int = 1,
                   underlay: bool = False) -> dict:
    """Flood at ``rate`` for ``seconds`` while capturing on both nodes; counts and drops."""
    (src_node, (src_pid, _)), (dst_node, (dst_pid, dst_ip)) = src, dst
    if underlay:
        code, target = underlay_sender(svc, dst_node)
        return await _step(svc, UNDERLAY_VNI, "198.19.254.2", src_node, dst_node, rate, seconds, senders,
                           lambda: f"python3 -c {shlex.quote(code)} {rate / senders} {seconds} {target} 0", None)
    return await _step(svc, vni, dst_ip, src_node, dst_node, rate, seconds, senders,
                       lambda: in_probe(src_pid, SENDER, rate / senders, seconds, dst_ip, size), dst_pid)


async def _step(svc, vni, dst_ip, src_node, dst_node, rate, seconds, senders, sender_cmd, dst_pid) -> dict:
    counts = {src_node: 0, dst_node: 0}
    st = {"dropped": 0, "notices": []}
    lags: list[float] = []
    started = asyncio.Event()
    want_info = f"> {PORT}"

    async def consume():
        async with aclosing(svc.capture([src_node, dst_node])) as batches:
            async for b in batches:
                now = time.time()
                started.set()
                st["dropped"] += b.dropped
                st["notices"] += b.notices
                for f in b.frames:
                    if f.vni == vni and f.inner_dst == dst_ip and f.info.endswith(want_info):
                        counts[f.node] += 1
                if len(lags) < 300_000:
                    lags.extend(now - f.ts for f in b.frames)   # wire (node's clock) -> consumer, per frame

    reader = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    sink = None
    if dst_pid is not None:
        sink = await svc.pool.stream(dst_node, in_probe(dst_pid, SINK, seconds + 3))
        await asyncio.wait_for(sink.process.stdout.readline(), 15)
    cpu0, t0 = time.process_time(), time.monotonic()
    runs = await asyncio.gather(*(svc.pool.run(src_node, sender_cmd(), timeout=seconds + 30, check=True)
                                  for _ in range(senders)))
    outs = [r.stdout.split() for r in runs]
    sent, errors = sum(int(o[0]) for o in outs), sum(int(o[1]) for o in outs)
    took = max(float(o[2]) for o in outs)
    received = int((await asyncio.wait_for(sink.process.stdout.read(), seconds + 10)).strip() or 0) if sink else -1
    await asyncio.sleep(0.5)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return {"rate": rate, "sent": sent, "send_errors": errors, "sent_pps": sent / took,
            "received": received, "decoded": counts, "dropped": st["dropped"],
            "lag_ms": statistics.median(lags) * 1000 if lags else None,
            "lag95_ms": sorted(lags)[int(len(lags) * 0.95)] * 1000 if lags else None,
            "src": src_node, "dst": dst_node, "cpu": cpu / wall, "notices": [n for n in st["notices"] if "capture ended" in n]}


def kept_up(r: dict) -> bool:
    """No capture-side loss: nothing dropped by our buffer, every sent packet decoded on the sending node
    (so tcpdump's kernel buffer dropped none there either), and on the receiving node every packet that reached it (the sink's
    count; in underlay mode, all but at most 0.01% lost by the network itself before the node)."""
    tx, rx = r["decoded"][r["src"]], r["decoded"][r["dst"]]
    arrived = r["received"] if r["received"] >= 0 else r["sent"] - r["sent"] // 10000
    return r["sent"] > 0 and tx == r["sent"] and rx >= arrived and r["dropped"] == 0


async def bench(inventory: str, rates: list[int], seconds: float, size: int, senders: int,
                underlay: bool = False) -> None:
    svc = LiveService.open(inventory)
    try:
        net = next(n for n in await svc.networks() if n.name == svc.inventory.cluster.network)
        probes = await probe_pids(svc, net)
        nodes = [n.name for n in svc.inventory.nodes if n.name in probes][:2]
        if len(nodes) < 2:
            raise SystemExit(f"need probes on two nodes, found {sorted(probes)}")
        src, dst = (nodes[0], probes[nodes[0]]), (nodes[1], probes[nodes[1]])
        if underlay:
            print(f"underlay flood {nodes[0]} -> {nodes[1]}:4789, VXLAN-shaped UDP with unused VNI {UNDERLAY_VNI} "
                  f"(no overlay work in the kernel), {seconds:g} s per step, {senders} sender(s); live capture on both nodes")
        else:
            print(f"flood {src[1][1]} ({nodes[0]}) -> {dst[1][1]}:{PORT} ({nodes[1]}) over {net.name} VNI {net.vni}, "
                  f"UDP payload {size} B, {seconds:g} s per step, {senders} sender(s); live capture on both nodes")
        print(f"{'target/s':>9} {'sent/s':>9} {'sent':>8} {'sink got':>8} {'decoded n1':>10} {'decoded n2':>10} "
              f"{'buf drop':>8} {'cpu':>5} {'lag ms p50/p95':>14}  kept up")
        best, fails, sender_bound = 0, 0, False
        for rate in rates:
            r = await one_step(svc, net.vni, src, dst, rate, seconds, size, senders, underlay)
            ok = kept_up(r)
            d1, d2 = (r["decoded"][n] for n in nodes)
            print(f"{rate:>9} {r['sent_pps']:>9.0f} {r['sent']:>8} {r['received']:>8} {d1:>10} {d2:>10} "
                  f"{r['dropped']:>8} {r['cpu']:>5.0%} {(r['lag_ms'] or 0):>7.1f}/{(r['lag95_ms'] or 0):<6.1f}  {'yes' if ok else 'NO'}"
                  + ("  (sender below target)" if r["sent_pps"] < 0.9 * rate else "")
                  + (f"  ({'; '.join(r['notices'])})" if r["notices"] else ""), flush=True)
            if ok:
                best = max(best, int(r["sent_pps"]))
                sender_bound = r["sent_pps"] < 0.9 * rate
                fails = 0
            else:
                fails += 1
                if fails >= 2:
                    break
        print(f"highest flood rate the live capture kept up with (2 nodes, every frame decoded, no drops): "
              f"{'>= ' if sender_bound else ''}{best} packets/s ({2 * best} frames/s decoded)"
              + ("; the sender, not the capture, was the limit" if sender_bound else ""))
    finally:
        await svc.close()


async def with_own_lab(rates: list[int], seconds: float, size: int, senders: int, underlay: bool) -> None:
    from core.lab.manager import lab_down, lab_up

    name = f"bflood{os.getpid() % 100000}"
    t0 = time.monotonic()
    info = await lab_up(name, 2)
    try:
        svc = LiveService.open(info.inventory_path)
        try:
            steps = {e.step.id: e.step async for e in svc.runbook_apply()}
        finally:
            await svc.close()
        bad = [f"{s.id}: {s.detail}" for s in steps.values() if s.ok is False]
        if bad:
            raise SystemExit(f"runbook apply failed on lab {name}: {'; '.join(bad)}")
        print(f"lab {name} up with the overlay applied in {time.monotonic() - t0:.1f} s")
        await bench(info.inventory_path, rates, seconds, size, senders, underlay)
    finally:
        await asyncio.to_thread(lab_down, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inventory", help="a lab or hosts with the runbook applied (default: a lab of its own)")
    p.add_argument("--rates", default=RATES, help=f"packets/s steps (default {RATES})")
    p.add_argument("--seconds", type=float, default=3.0, help="flood time per step")
    p.add_argument("--payload", type=int, default=64, help="UDP payload bytes")
    p.add_argument("--senders", type=int, default=2, help="parallel sender processes (the rate is split)")
    p.add_argument("--underlay", action="store_true",
                   help="flood VXLAN-shaped UDP node to node instead (finds the capture's ceiling when the "
                        "overlay's own kernel path limits the probes' flood)")
    a = p.parse_args()
    rates = [int(x) for x in a.rates.split(",")]
    if a.inventory:
        asyncio.run(bench(a.inventory, rates, a.seconds, a.payload, a.senders, a.underlay))
    else:
        asyncio.run(with_own_lab(rates, a.seconds, a.payload, a.senders, a.underlay))


if __name__ == "__main__":
    main()
