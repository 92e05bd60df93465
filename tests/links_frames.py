"""Synthetic sightings for the links matcher: each VXLAN frame seen leaving its source node and (unless
lost) arriving at its destination, with chosen loss, duplicates, reordering, delay and clock offsets.

Used by tests/test_links.py and bench/links.py. Raw bytes are real Ethernet/IPv4/UDP/VXLAN/Ethernet/
IPv4/ICMP headers (what :func:`core.links.identity.frame_key` reads); the Frame fields are filled as the
decoder and the namer would.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from core.model import Frame

NODES = {"n1": "198.18.9.1", "n2": "198.18.9.2", "n3": "198.18.9.3"}


def raw_frame(osrc: str, odst: str, ip_id: int, sport: int, vni: int, inner_id: int, seq: int) -> bytes:
    outer_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 134, ip_id, 0, 64, 17, 0,
                           bytes(map(int, osrc.split("."))), bytes(map(int, odst.split("."))))
    udp = struct.pack("!HHHH", sport, 4789, 114, 0)
    vx = struct.pack("!II", 0x08000000, vni << 8)
    inner_eth = bytes.fromhex("02420a000003" "02420a000002") + b"\x08\x00"
    inner_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 84, inner_id & 0xFFFF, 0x4000, 64, 1, 0,
                           b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x03")
    icmp = struct.pack("!BBHHH", 8, 0, 0, 7, seq & 0xFFFF) + bytes(56)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + outer_ip + udp + vx + inner_eth + inner_ip + icmp


def frame(node: str, ts: float, src: str, dst: str, raw: bytes, vni: int) -> Frame:
    return Frame(ts, node, raw, len(raw), NODES[src], NODES[dst], 40000, 4789, vni, "10.0.0.2", "10.0.0.3",
                 proto="ICMP", length=98, outer_src_name=src, outer_dst_name=dst)


@dataclass
class Plan:
    """What to generate: ``count`` frames per (src, dst, vni) flow, one every ``gap`` seconds."""

    flows: list[tuple[str, str, int]] = field(default_factory=lambda: [("n1", "n2", 256), ("n2", "n1", 256)])
    count: int = 1000
    gap: float = 0.001
    delay: float = 0.0002               # true one-way delay
    jitter: float = 0.0001              # uniform extra delay
    loss: dict[tuple[str, str], float] = field(default_factory=dict)    # (src, dst) -> share lost
    dup: float = 0.0                    # share duplicated at the receiver
    reorder: float = 0.0                # share delayed past the next frame (arrives after it)
    clock: dict[str, float] = field(default_factory=dict)               # node -> its clock minus true time
    t0: float = 1_700_000_000.0
    seed: int = 1


def sightings(plan: Plan) -> list[Frame]:
    """Every sighting of the plan, merged in (node clock) time order as the capture merger yields them."""
    rng = random.Random(plan.seed)
    out: list[tuple[float, int, Frame]] = []
    k = 0
    for fi, (src, dst, vni) in enumerate(plan.flows):
        for i in range(plan.count):
            t = plan.t0 + i * plan.gap + fi * plan.gap / (len(plan.flows) + 1)
            raw = raw_frame(NODES[src], NODES[dst], (fi * 7919 + i) & 0xFFFF, 40000 + fi, vni, i, i)
            out.append((t + plan.clock.get(src, 0.0), k, frame(src, t + plan.clock.get(src, 0.0), src, dst, raw, vni)))
            k += 1
            if rng.random() < plan.loss.get((src, dst), 0.0):
                continue
            d = plan.delay + rng.random() * plan.jitter
            if rng.random() < plan.reorder:
                d += plan.gap * 1.5
            copies = 2 if rng.random() < plan.dup else 1
            for _ in range(copies):
                at = t + d + plan.clock.get(dst, 0.0)
                out.append((at, k, frame(dst, at, src, dst, raw, vni)))
                k += 1
                d += plan.jitter
    out.sort(key=lambda x: (x[0], x[1]))
    return [f for _, _, f in out]
