"""Benchmark: decoding speed of `capture --read FILE --flows` against scapy, on one core.

Generates a pcap of FRAMES (default 200,000) VXLAN frames of mixed sizes and protocols (ICMP, TCP,
UDP, ARP, inner IPv6, several VNIs, some 802.1Q outer and inner, some outer IPv6, ~0.5% malformed or
not VXLAN) in a temp dir, then prints side by side:
  - the path `capture --read FILE --flows` uses (file -> per-flow counters, core.vxlan_batch),
  - the per-frame fast path (file -> Frame objects, core.pcap_io + core.vxlan_decode),
  - scapy dissecting each packet (on a subset: SCAPY_FRAMES, default 5,000),
and the ratio. Targets (issue 4): >= 400k packets/s and >= 300x scapy; the mark is 850k packets/s.

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

from core.flows import FlowTable  # noqa: E402
from core.pcap_io import PcapFileReader, PcapWriter  # noqa: E402
from core.vxlan_batch import flows_from_pcap  # noqa: E402
from core.vxlan_decode import VxlanDecoder  # noqa: E402

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


def timed(fn, runs: int = RUNS) -> tuple[float, object]:
    times, res = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), res


def per_frame(path: Path) -> FlowTable:
    dec, table = VxlanDecoder(), FlowTable()
    frames = [dec.decode(d, ts, wl) for ts, _c, wl, d in PcapFileReader(path)]
    table.add_many(frames)
    return table


def frames_only(path: Path) -> int:
    dec = VxlanDecoder()
    return len([dec.decode(d, ts, wl) for ts, _c, wl, d in PcapFileReader(path)])


def scapy_rate(path: Path) -> float:
    from core.frame_detail import dissect
    raws = []
    for _ts, _c, _wl, d in PcapFileReader(path):
        raws.append(d)
        if len(raws) >= SCAPY_FRAMES:
            break
    dissect(raws[0])  # import and bind outside the timing
    t0 = time.perf_counter()
    for r in raws:
        dissect(r)
    return len(raws) / (time.perf_counter() - t0)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="overlay-bench-") as d:
        path = Path(d) / "mixed.pcap"
        t0 = time.perf_counter()
        nbytes = generate(path)
        print(f"generated {FRAMES:,} frames ({nbytes / FRAMES:.0f} bytes average, "
              f"{path.stat().st_size / 1e6:.1f} MB pcap) in {time.perf_counter() - t0:.1f} s")
        t_flows, (table, _trunc) = timed(lambda: flows_from_pcap(path))
        t_frames, n = timed(lambda: frames_only(path))
        reference = per_frame(path)
        same = [(s.vni, s.inner_src, s.inner_dst, s.proto, s.packets, s.bytes, s.pps, s.bps) for s in table.flows()] == \
               [(s.vni, s.inner_src, s.inner_dst, s.proto, s.packets, s.bytes, s.pps, s.bps) for s in reference.flows()]
        scapy = scapy_rate(path)
    flows_pps, frames_pps = FRAMES / t_flows, n / t_frames
    c = table.counts()
    print(f"flows: {c['flows']}, malformed {c['malformed']}, not VXLAN {c['not_vxlan']}; "
          f"batch flows equal the per-frame path's: {same}")
    print(f"{'path':58} {'packets/s':>12} {'x scapy':>9}")
    print(f"{'capture --read FILE --flows (file -> per-flow counters)':58} {flows_pps:12,.0f} {flows_pps / scapy:9.0f}")
    print(f"{'per-frame fast path (file -> Frame objects)':58} {frames_pps:12,.0f} {frames_pps / scapy:9.0f}")
    print(f"{f'scapy Ether(raw) dissection (first {SCAPY_FRAMES:,} frames)':58} {scapy:12,.0f} {1:9.0f}")
    print(f"median of {RUNS} runs on one core; targets: >= 400,000 packets/s and >= 300x scapy (mark: 850,000)")
    ok = flows_pps >= 400_000 and flows_pps / scapy >= 300 and same
    print("targets met" if ok else "TARGETS NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
