"""A VXLAN frame's identity: the bytes the underlay does not change between two capture points.

Outer source and destination address, outer IPv4 ID, UDP source port, VNI and the first
``INNER_BYTES`` bytes of the inner frame (inner MACs, IP header with its ID, the start of L4: enough
to tell apart two frames of one flow). Not in it: TTL, checksums, the outer MACs (a router rewrites
them). The key is those bytes concatenated (exact, no hash collisions; ~80 bytes). The common shape
(untagged Ethernet, IPv4 without options) is sliced at fixed offsets; the rest is walked.
"""
from __future__ import annotations

from struct import Struct

INNER_BYTES = 48
_TAGS = (0x8100, 0x88A8, 0x9100)
_U16 = Struct("!H").unpack_from


def frame_key(raw: bytes) -> bytes | None:
    """The identity of an underlay VXLAN frame, or None when its headers are not all captured."""
    if raw[12:15] == b"\x08\x00\x45" and len(raw) >= 50:
        return raw[18:20] + raw[26:36] + raw[46:49] + raw[50:50 + INNER_BYTES]
    return _general_key(raw)


def _general_key(raw: bytes) -> bytes | None:
    n = len(raw)
    if n < 14:
        return None
    off, et = 14, _U16(raw, 12)[0]
    for _ in range(2):
        if et not in _TAGS or n < off + 4:
            break
        et, off = _U16(raw, off + 2)[0], off + 4
    if et == 0x0800 and n >= off + 20:
        ihl = (raw[off] & 15) * 4
        ident, addrs = raw[off + 4:off + 6], raw[off + 12:off + 20]
    elif et == 0x86DD and n >= off + 40:
        ihl, ident, addrs = 40, raw[off + 1:off + 4], raw[off + 8:off + 40]   # flow label stands for the ID
    else:
        return None
    udp = off + ihl
    if n < udp + 16:
        return None
    return ident + addrs + raw[udp:udp + 2] + raw[udp + 12:udp + 15] + raw[udp + 16:udp + 16 + INNER_BYTES]
