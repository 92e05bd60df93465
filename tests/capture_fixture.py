"""Builds tests/fixtures/capture_small.pcap: a few hundred VXLAN frames matching the recorded lab.

The addresses match tests/fixtures/lab_state.json (nodes 198.18.0.1-3, probes 198.19.0.2-4 on VNI
256 "demo"; VNI 257 "web" has no containers, so its inner addresses stay raw). Frames carry ICMP
echo, TCP, UDP and ARP, plus two malformed ones; timestamps are fixed so the UI's snapshots are
deterministic. scapy builds them (independent of the fast decoder under test). A pcap recorded
from the real lab can replace it: tests only assume what :func:`expected_counts` says.

Run ``python -m tests.capture_fixture`` to regenerate it.
"""
from __future__ import annotations

from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "capture_small.pcap"
T0 = 1_764_000_000.0             # 2025-11-24 16:00:00 UTC
NODES = {"docker-node1": "198.18.0.1", "docker-node2": "198.18.0.2", "docker-node3": "198.18.0.3"}
PROBES = {"docker-node1": ("198.19.0.2", "02:42:c6:13:00:02"), "docker-node2": ("198.19.0.3", "02:42:c6:13:00:03"),
          "docker-node3": ("198.19.0.4", "02:42:c6:13:00:04")}
WEB = (("198.19.1.2", "02:42:c6:13:01:02"), ("198.19.1.3", "02:42:c6:13:01:03"))
ROUNDS = 50                      # each round: 6 frames on VNI 256, 2 on VNI 257


def _vxlan(src_node: str, dst_node: str, vni: int, inner, sport: int):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    return (Ether(src="02:00:c6:12:00:01", dst="02:00:c6:12:00:02") / IP(src=NODES[src_node], dst=NODES[dst_node])
            / UDP(sport=sport, dport=4789) / VXLAN(vni=vni, flags=0x08) / inner)


def build_packets():
    """The fixture's packets, with their fixed timestamps."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.packet import Raw
    pkts = []
    a, b = PROBES["docker-node1"], PROBES["docker-node2"]
    c = PROBES["docker-node3"]
    w1, w2 = WEB
    for i in range(ROUNDS):
        def inner(s, d, l4):
            return Ether(src=s[1], dst=d[1]) / IP(src=s[0], dst=d[0]) / l4
        frames = [
            ("docker-node1", "docker-node2", 256, inner(a, b, ICMP(type=8, id=1, seq=i) / Raw(b"x" * 56))),
            ("docker-node2", "docker-node1", 256, inner(b, a, ICMP(type=0, id=1, seq=i) / Raw(b"x" * 56))),
            ("docker-node1", "docker-node3", 256, inner(a, c, TCP(sport=40000 + i, dport=80, flags="S"))),
            ("docker-node3", "docker-node1", 256, inner(c, a, TCP(sport=80, dport=40000 + i, flags="SA"))),
            ("docker-node2", "docker-node3", 256, inner(b, c, UDP(sport=5353, dport=53) / Raw(b"q" * 20))),
            ("docker-node2", "docker-node1", 257, inner(w1, w2, UDP(sport=9000, dport=9001) / Raw(b"w" * 200))),
            ("docker-node1", "docker-node2", 257, inner(w2, w1, ICMP(type=8, id=2, seq=i))),
        ]
        if i % 10 == 0:
            frames.append(("docker-node1", "docker-node3", 256,
                           Ether(src=a[1], dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=a[1], psrc=a[0], pdst=c[0])))
        for k, (s, d, vni, inn) in enumerate(frames):
            pkt = _vxlan(s, d, vni, inn, 40000 + (i * 7 + k) % 20000)
            pkt.time = T0 + i * 0.1 + k * 0.001
            pkts.append(pkt)
    return pkts


def build(path: Path = FIXTURE) -> Path:
    """Write the fixture pcap (a classic, little-endian, microsecond pcap) with 2 malformed frames at the end."""
    from scapy.utils import PcapWriter
    pkts = build_packets()
    path.parent.mkdir(parents=True, exist_ok=True)
    with PcapWriter(str(path), linktype=1, sync=True) as w:
        for p in pkts:
            w.write(p)
        last = pkts[-1]
        cut = bytes(last)[:60]                              # VXLAN header present, inner cut short
        w.write_packet(cut, sec=int(T0 + ROUNDS * 0.1), usec=0, wirelen=len(bytes(last)))
        w.write_packet(bytes(last)[:20], sec=int(T0 + ROUNDS * 0.1), usec=1000, wirelen=len(bytes(last)))
    return path


def expected_counts() -> dict:
    """What the fixture holds, for the tests' assertions."""
    arps = len(range(0, ROUNDS, 10))
    return {"frames": ROUNDS * 7 + arps + 2, "vni256": ROUNDS * 5 + arps, "vni257": ROUNDS * 2,
            "icmp": ROUNDS * 3, "arp": arps, "malformed": 2}


if __name__ == "__main__":
    print(build())
