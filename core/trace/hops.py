"""Recognising a traced ping's packets: tcpdump text lines from a container, and VXLAN frames."""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.model import Frame

PAYLOAD = 1111                     # bytes of ICMP data: an unusual size marks the trace's pings
PATTERN = "5a"                     # and an unusual payload byte
INNER_LEN = PAYLOAD + 8 + 20 + 14  # inner Ethernet frame length of one of them

# "1700000000.123456 eth0  Out IP 10.0.0.2 > 10.0.0.3: ICMP echo request, id 12, seq 0, length 1119"
_LINE = re.compile(r"^(\d+\.\d+)\s.*?IP (\S+) > (\S+): ICMP echo (request|reply), id (\d+), seq (\d+), length (\d+)")


@dataclass(frozen=True)
class Echo:
    ts: float
    src: str
    dst: str
    kind: str                      # "request" or "reply"
    seq: int


def parse_line(line: str) -> Echo | None:
    """One line of ``tcpdump -nn -tt -l`` output, if it is an echo of the trace's size."""
    m = _LINE.match(line.strip())
    if not m or int(m.group(7)) != PAYLOAD + 8:
        return None
    return Echo(float(m.group(1)), m.group(2), m.group(3), m.group(4), int(m.group(6)))


def frame_echo(f: Frame) -> Echo | None:
    """An untagged IPv4-in-IPv4 VXLAN frame carrying one of the trace's echoes (inner length tells)."""
    raw = f.raw
    if f.proto != "ICMP" or f.length != INNER_LEN or len(raw) < 92 or raw[64] != 0x45:
        return None
    t = raw[84]
    if t not in (0, 8):
        return None
    return Echo(f.ts, f.inner_src, f.inner_dst, "request" if t == 8 else "reply", int.from_bytes(raw[90:92], "big"))
