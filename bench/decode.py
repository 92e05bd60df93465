"""Benchmark: decoding speed of `capture --read FILE --flows` against scapy, on one core.

Generates a pcap of FRAMES (default 200,000) VXLAN frames of mixed sizes and protocols (ICMP, TCP,
UDP, ARP, inner IPv6, several VNIs, some 802.1Q outer and inner, some outer IPv6, ~0.5% malformed or
not VXLAN) in a temp dir, then prints side by side:
  - the path `capture --read FILE --flows` uses (file -> per-flow counters, core.capture.batch),
    also on the same frames snapped to 128 bytes, as the live capture records them,
  - the per-frame fast path (file -> Frame objects, core.capture.pcap + core.capture.decode),
  - scapy dissecting each packet (on a subset: SCAPY_FRAMES, default 5,000),
and the ratios. Rates are by CPU time of this process (one core) and by wall-clock time.
Targets (issue 4): >= 400k packets/s and >= 300x scapy; the mark is 850k packets/s.

    .venv/bin/python bench/decode.py [FRAMES]
"""
from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.capture.batch import flows_from_pcap
from core.capture.decode import VxlanDecoder
from core.capture.flows import FlowTable
from core.capture.pcap import PcapFileReader, PcapWriter

FRAMES = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
SCAPY_FRAMES = int(os.environ.get("SCAPY_FRAMES", "5000"))
RUNS = 3


def templates() -> list[bytes]:
    """A few hundred distinct frames built with scapy: protocols x sizes x VNIs x tagging."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    rnd = random.Random(7)
    out = []
    inners = []
    for size in (0, 56, 200, 512, 1000, 1400):
        pay = Raw(bytes(size)) if size else Raw(b"")
        inners += [IP(src="10.0.0.2", dst="10.0.0.3") / ICMP() / pay,
                   IP(src="10.0.0.3", dst="10.0.0.2") / ICMP(type=0) / pay,
                   IP(src="10.0.1.5", dst="10.0.1.9") / TCP(sport=40000, dport=80, flags="PA") / pay,
                   IP(src="10.0.1.9", dst="10.0.1.5") / TCP(sport=80, dport=40000, flags="A") / pay,
                   IP(src="10.0.2.7", dst="10.0.2.8") / UDP(sport=5353, dport=53) / pay,
                   IPv6(src="fd00::2", dst="fd00::3") / ICMPv6EchoRequest() / pay,
                   IPv6(src="fd00::4", dst="fd00::5") / TCP(sport=1234, dport=443) / pay]
    inners.append(ARP(psrc="10.0.0.2", pdst="10.0.0.3"))
    for inner in inners:
        for vni in (256, 257, 4097):
            outer_v6 = rnd.random() < 0.1
            o = Ether(src="02:00:c6:12:00:01", dst="02:00:c6:12:00:02")
            if rnd.random() < 0.2:
                o = o / Dot1Q(vlan=100)
            o = o / (IPv6(src="2001:db8::1", dst="2001:db8::2") if outer_v6 else IP(src="198.18.0.1", dst="198.18.0.2"))
            ie = Ether(src="02:42:0a:00:00:02", dst="02:42:0a:00:00:03")
            if rnd.random() < 0.2:
                ie = ie / Dot1Q(vlan=7)
            out.append(bytes(o / UDP(sport=rnd.randrange(32768, 61000), dport=4789) / VXLAN(vni=vni) / ie / inner))
    bad = [out[0][:60], out[5][:45], bytes(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(dport=22))]
    return out + bad


def generate(path: Path) -> int:
    tmpl = templates()
    good, bad = tmpl[:-3], tmpl[-3:]
    rnd = random.Random(42)
    ts, total = 1_700_000_000.0, 0
    with PcapWriter(path) as w:
        for _ in range(FRAMES):
            ts += rnd.random() * 1e-5
            f = rnd.choice(bad) if rnd.random() < 0.005 else rnd.choice(good)
            w.write(ts, f)
            total += len(f)
    return total


class Rate:
    """Packets/s of one path, by CPU time of this process (what one core does, little disturbed by the
    other processes of a shared machine) and by wall-clock time; median of ``runs`` runs."""

    def __init__(self, packets: int, cpu: list[float], wall: list[float]) -> None:
        self.cpu = packets / statistics.median(cpu)
        self.wall = packets / statistics.median(wall)


def timed(fn, packets: int, runs: int = RUNS) -> tuple[Rate, object]:
    cpu, wall, res = [], [], None
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        res = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return Rate(packets, cpu, wall), res


def per_frame(path: Path) -> FlowTable:
    dec, table = VxlanDecoder(), FlowTable()
    frames = [dec.decode(d, ts, wl) for ts, _c, wl, d in PcapFileReader(path)]
    table.add_many(frames)
    return table


def frames_streamed(path: Path) -> int:
    """Each Frame decoded and dropped, as `capture --read FILE` prints them."""
    dec = VxlanDecoder()
    decode = dec.decode
    for ts, _c, wl, d in PcapFileReader(path):
        decode(d, ts, wl)
    return dec.frames


def frames_kept(path: Path) -> int:
    """Every Frame kept in a list (the garbage collector then costs a good part)."""
    dec = VxlanDecoder()
    return len([dec.decode(d, ts, wl) for ts, _c, wl, d in PcapFileReader(path)])


def scapy_rates(path: Path) -> tuple[Rate, Rate]:
    """scapy on the first SCAPY_FRAMES frames, once each: Ether(raw) dissecting bytes already in memory,
    and scapy's own PcapReader reading and dissecting the file."""
    from scapy.utils import PcapReader

    from core.capture.detail import dissect
    raws = []
    for _ts, _c, _wl, d in PcapFileReader(path):
        raws.append(d)
        if len(raws) >= SCAPY_FRAMES:
            break
    dissect(raws[0])  # import and bind outside the timing
    mem, _ = timed(lambda: [dissect(r) for r in raws], len(raws), runs=1)

    def read_file() -> None:
        with PcapReader(str(path)) as rd:
            for n, _pkt in enumerate(rd, 1):
                if n >= len(raws):
                    break
    return mem, timed(read_file, len(raws), runs=1)[0]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="overlay-bench-") as d:
        path = Path(d) / "mixed.pcap"
        t0 = time.perf_counter()
        nbytes = generate(path)
        print(f"generated {FRAMES:,} frames ({nbytes / FRAMES:.0f} bytes average, "
              f"{path.stat().st_size / 1e6:.1f} MB pcap) in {time.perf_counter() - t0:.1f} s")
        flows, (table, _trunc) = timed(lambda: flows_from_pcap(path), FRAMES)
        snapped = Path(d) / "snapped.pcap"                 # the same frames as `tcpdump -s 128` records them
        with PcapWriter(snapped, snaplen=128) as w:
            for ts, _c, wl, data in PcapFileReader(path):
                w.write(ts, data, wl)
        flows128, _ = timed(lambda: flows_from_pcap(snapped), FRAMES)
        frames, _n = timed(lambda: frames_streamed(path), FRAMES)
        kept, _n = timed(lambda: frames_kept(path), FRAMES)
        reference = per_frame(path)
        same = table.flows() == reference.flows() and table.counts() == reference.counts()
        scapy, scapy_file = scapy_rates(path)
    c = table.counts()
    print(f"{c['flows']} flows, {c['malformed']} malformed, {c['not_vxlan']} not VXLAN; "
          f"the --flows path's table equals the per-frame path's: {same}")
    best = max(scapy.cpu, scapy_file.cpu)         # ratios against the faster scapy figure
    print(f"{'path':56} {'packets/s (CPU)':>15} {'(wall)':>10} {'x scapy':>8}")
    rows = [("capture --read FILE --flows (file -> per-flow counters)", flows),
            ("  the same, frames snapped to 128 bytes (tcpdump -s 128)", flows128),
            ("per-frame fast path (file -> Frame objects, streamed)", frames),
            ("  the same, every Frame kept in a list", kept),
            ("scapy Ether(raw) dissecting each frame", scapy),
            ("scapy PcapReader, file -> dissected", scapy_file)]
    for name, r in rows:
        print(f"{name:56} {r.cpu:15,.0f} {r.wall:10,.0f} {r.cpu / best:8.1f}")
    print(f"one core; fast paths: median of {RUNS} runs over {FRAMES:,} frames; scapy: first {SCAPY_FRAMES:,} "
          f"frames once; x scapy = CPU rate / the faster scapy CPU rate")
    ratio = flows.cpu / best
    print(f"targets: >= 400,000 packets/s and >= 300x scapy (mark 850,000): --flows path {flows.cpu:,.0f}/s, "
          f"{ratio:.0f}x -> {'met' if flows.cpu >= 400_000 and ratio >= 300 and same else 'NOT met'}"
          f"{'; mark reached' if flows.cpu >= 850_000 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
