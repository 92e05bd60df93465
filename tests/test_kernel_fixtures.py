"""Real VXLAN frames from the Linux kernel's vxlan driver (two network namespaces, VNIs 256 and
4097, captured with tcpdump on the underlay veth, once in full and once with ``-s 128``), decoded by
the fast path and checked against tcpdump's own decoding of the same file, frame by frame."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core.capture.batch import flows_from_pcap
from core.capture.decode import VxlanDecoder
from core.capture.flows import FlowTable
from core.capture.pcap import iter_pcap

FIXTURES = Path(__file__).parent / "fixtures"
FILES = ["vxlan_kernel.pcap", "vxlan_kernel_s128.pcap"]
OUTER = re.compile(r"IP6? (\S+)\.(\d+) > (\S+)\.(\d+): VXLAN, flags \[I\] \(0x08\), vni (\d+)$")


def _tcpdump(path: Path) -> list[tuple]:
    """(outer src, outer dst, vni, inner src, inner dst, proto) per frame, as tcpdump -nn prints them."""
    assert shutil.which("tcpdump"), "tcpdump is needed (the Makefile's deps install it)"
    lines = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True,
                           check=True, timeout=30).stdout.splitlines()
    out = []
    for outer, inner in zip(lines[0::2], lines[1::2]):
        m = OUTER.search(outer)
        assert m, outer
        if inner.startswith("ARP, Request"):
            dst, src = re.match(r"ARP, Request who-has (\S+) tell (\S+),", inner).groups()
            proto = "ARP"
        elif inner.startswith("ARP, Reply"):
            src, dst = re.match(r"ARP, Reply (\S+) is-at", inner).group(1), None
            proto = "ARP"
        else:
            fam, src, dst, rest = re.match(r"(IP6?) (\S+) > (\S+): (.*)", inner).groups()
            proto = ("ICMPv6" if rest.startswith("ICMP6") else "ICMP" if rest.startswith("ICMP")
                     else "TCP" if rest.startswith("Flags") else "UDP")
            if proto in ("TCP", "UDP"):                       # tcpdump appends the port: ADDR.PORT
                src, dst = src.rsplit(".", 1)[0], dst.rsplit(".", 1)[0]
        out.append((m[1], m[3], int(m[5]), src, dst.rstrip(":") if dst else None, proto))
    return out


@pytest.mark.parametrize("name", FILES)
def test_fast_path_agrees_with_tcpdump_on_kernel_vxlan_frames(name):
    path = FIXTURES / name
    dec = VxlanDecoder()
    ours = [dec.decode(data, ts, wl) for ts, _c, wl, data in iter_pcap(path)]
    theirs = _tcpdump(path)
    assert len(ours) == len(theirs) == 32 and dec.counts()["malformed"] == 0
    for f, (osrc, odst, vni, isrc, idst, proto) in zip(ours, theirs):
        assert (f.outer_src, f.outer_dst, f.vni, f.inner_src, f.proto) == (osrc, odst, vni, isrc, proto)
        assert idst is None or f.inner_dst == idst
    assert {f.vni for f in ours} == {256, 4097}
    assert {f.proto for f in ours} == {"ARP", "ICMP", "ICMPv6", "TCP", "UDP"}


def test_snapped_and_full_captures_give_the_same_flows():
    full, snapped = (flows_from_pcap(FIXTURES / n)[0] for n in FILES)
    key = [(s.vni, s.inner_src, s.inner_dst, s.proto, s.packets, s.bytes) for s in full.flows()]
    assert key == [(s.vni, s.inner_src, s.inner_dst, s.proto, s.packets, s.bytes) for s in snapped.flows()]
    big = [s for s in full.flows() if s.proto == "ICMP" and s.vni == 256 and s.inner_src == "198.19.250.1"][0]
    assert big.packets == 4 and big.bytes == 2 * 98 + 2 * 1442     # inner lengths from the wire length


@pytest.mark.parametrize("name", FILES)
def test_batch_path_equals_per_frame_path_on_kernel_frames(name):
    ref = FlowTable()
    dec = VxlanDecoder()
    ref.add_many(dec.decode(d, ts, wl) for ts, _c, wl, d in iter_pcap(FIXTURES / name))
    assert flows_from_pcap(FIXTURES / name)[0].flows() == ref.flows()
