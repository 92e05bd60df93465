"""Fast-path VXLAN decoder: raw underlay frame bytes -> :class:`core.model.Frame`.

Plain ``struct`` over ``bytes`` (see FACTS: ~10x dpkt, ~400x scapy). It understands the outer
Ethernet (802.1Q, QinQ), IPv4/IPv6, UDP to the VXLAN port, the VXLAN flags and VNI, the inner
Ethernet (802.1Q), inner IPv4 (with options), IPv6 (with extension headers), ARP, and inner TCP/UDP
ports or ICMP/ICMPv6 type and code.

Nothing raises out of :meth:`VxlanDecoder.decode`: bad input becomes a Frame whose ``proto`` is
``"MALFORMED"`` (cut short or inconsistent) or ``"NOT-VXLAN"`` (a valid frame that is not VXLAN on
the configured port), with ``error`` saying why; the decoder counts both.

Addresses are formatted once per distinct address (a small cache): flows repeat few addresses, and
formatting costs 2-3x the decode itself.
"""
from __future__ import annotations

import logging
import socket
from struct import Struct

from core.model import Frame

DEFAULT_VXLAN_PORT = 4789
LINUX_VXLAN_PORT = 8472
VXLAN_PORT_NAMES = {DEFAULT_VXLAN_PORT: "IANA's", LINUX_VXLAN_PORT: "Linux's default", 4790: "VXLAN-GPE"}
MALFORMED = "MALFORMED"
NOT_VXLAN = "NOT-VXLAN"

VLAN_TAGS = frozenset((0x8100, 0x88A8, 0x9100))   # 802.1Q, 802.1ad (QinQ), old QinQ
MAX_TAGS = 2
ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
IPV6_EXT_HEADERS = frozenset((0, 43, 44, 51, 60))  # hop-by-hop, routing, fragment, AH, dest options
MAX_EXT_HEADERS = 8

IPV4_PROTOS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6",
               89: "OSPF", 112: "VRRP", 132: "SCTP"}
IPV6_PROTOS = {**IPV4_PROTOS, 59: "IPv6"}
# How many L4 bytes the fast path needs to show what it shows (ports; ICMP type and code).
L4_NEEDED = {6: 4, 17: 4, 1: 2, 58: 2}
ICMP_TYPES = {0: "echo reply", 8: "echo request", 3: "unreachable", 11: "time exceeded", 5: "redirect"}
ICMP6_TYPES = {128: "echo request", 129: "echo reply", 133: "router solicitation",
               134: "router advertisement", 135: "neighbor solicitation", 136: "neighbor advertisement",
               1: "unreachable", 2: "packet too big", 3: "time exceeded"}
TCP_FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"))

_FLAGS = [" [" + "".join(c for bit, c in TCP_FLAGS if fl & bit) + "]" for fl in range(256)]
_PORTS: dict[bytes, str] = {}          # "sport > dport" by the 4 port bytes (ports repeat within flows)
# Offsets 12..87 of Ethernet/IPv4(20)/UDP/VXLAN/Ethernet/IPv4(20)/4 bytes of L4, in one unpack.
_COMMON = Struct("!12xH B5xHxB2x8s HH4xB3xI 12sH B5xHxB2x8s 4s").unpack_from
COMMON_LEN = 88
_U16 = Struct("!H").unpack_from
_U16X2 = Struct("!HH").unpack_from
_U32 = Struct("!I").unpack_from
_ARP_HDR = Struct("!HHBBH").unpack_from


class _Bad(Exception):
    """Internal: stop decoding; ``kind`` is MALFORMED or NOT-VXLAN."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind, self.why = kind, why


def proto_name(family: int, number: int) -> str:
    """Protocol label for an inner IP protocol number (``family`` 4 or 6); used by both decode paths."""
    if family == 4:
        return IPV4_PROTOS.get(number) or f"IP/{number}"
    return IPV6_PROTOS.get(number) or f"IPv6/{number}"


def ethertype_name(ethertype: int) -> str:
    """Label of an inner frame that is neither IP nor ARP."""
    return f"ETH/0x{ethertype:04x}"


class AddressFormatter:
    """Formats IPv4, IPv6 and MAC address bytes to text, caching each distinct address."""

    __slots__ = ("_cache", "_pairs", "limit")

    def __init__(self, limit: int = 65536) -> None:
        self._cache: dict[bytes, str] = {}
        self._pairs: dict[bytes, tuple[str, str]] = {}
        self.limit = limit

    def pair(self, raw: bytes) -> tuple[str, str]:
        """Two adjacent addresses of equal size (src+dst, or dst MAC+src MAC), formatted."""
        p = self._pairs.get(raw)
        if p is None:
            h = len(raw) // 2
            p = (self(raw[:h]), self(raw[h:]))
            if len(self._pairs) >= self.limit:
                self._pairs.clear()
            self._pairs[raw] = p
        return p

    def __call__(self, raw: bytes) -> str:
        s = self._cache.get(raw)
        if s is None:
            n = len(raw)
            if n == 4:
                s = socket.inet_ntoa(raw)
            elif n == 16:
                s = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                s = raw.hex(":")
            if len(self._cache) >= self.limit:
                self._cache.clear()
            self._cache[raw] = s
        return s


class VxlanDecoder:
    """Decodes underlay frames for one VXLAN UDP port and counts what it saw.

    ``frames``, ``malformed`` and ``not_vxlan`` are running counts since creation.
    """

    __slots__ = ("port", "frames", "malformed", "not_vxlan", "fmt", "udp_ports", "bugs")

    def __init__(self, port: int = DEFAULT_VXLAN_PORT, formatter: AddressFormatter | None = None) -> None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"VXLAN port {port} is not a UDP port (1-65535)")
        self.port = int(port)
        self.frames = self.malformed = self.not_vxlan = 0
        self.bugs = 0           #: frames the decoder itself failed on (a bug, not bad traffic): kept apart
        self.udp_ports: dict[int, int] = {}       # UDP destination ports of non-VXLAN frames (for hints)
        self.fmt = formatter or AddressFormatter()

    def counts(self) -> dict[str, int]:
        """Running totals: frames decoded, and how many of them were malformed or not VXLAN."""
        return {"frames": self.frames, "malformed": self.malformed, "not_vxlan": self.not_vxlan}

    def port_hint(self) -> str | None:
        """A sentence when non-VXLAN frames went to another well-known VXLAN port (4789, 8472, 4790)."""
        ports = [(n, p) for p, n in self.udp_ports.items() if p in (DEFAULT_VXLAN_PORT, LINUX_VXLAN_PORT, 4790)]
        if not ports:
            return None
        n, p = max(ports)
        return (f"{n} frames are UDP to port {p}, a VXLAN port ({VXLAN_PORT_NAMES[p]}), not to {self.port}: "
                f"try --vxlan-port {p}")

    def decode(self, raw: bytes, ts: float = 0.0, wire_len: int | None = None, node: str = "") -> Frame:
        """Decode one captured frame; never raises (bad input gives a MALFORMED/NOT-VXLAN Frame)."""
        self.frames += 1
        if type(raw) is not bytes:
            raw = bytes(raw)
        n = len(raw)
        if wire_len is None or wire_len < n:
            wire_len = n
        if n >= COMMON_LEN:
            f = self._common(raw, ts, wire_len, node, n)
            if f is not None:
                return f
        f = Frame(ts, node, raw, wire_len)
        try:
            self._decode(f, raw)
        except _Bad as e:
            self._mark(f, e.kind, e.why)
        except Exception as e:  # noqa: BLE001 - a decoder bug must not take the capture down: counted apart
            self._bug(f, e)
        return f

    def _bug(self, f: Frame, e: Exception) -> None:
        """The decoder failed on a frame: count it in ``bugs`` (not ``malformed``), log the first one."""
        self.bugs += 1
        if self.bugs == 1:
            logging.getLogger(__name__).error("decoder bug on a %d-byte frame", len(f.raw), exc_info=e)
        f.proto, f.error = MALFORMED, f"decoder bug: {type(e).__name__}: {e}"
        if not f.length:
            f.length = f.wire_len

    def _common(self, raw: bytes, ts: float, wire_len: int, node: str, n: int) -> Frame | None:
        """The most common shape in one unpack: untagged Ethernet/IPv4 (no options) outside and inside,
        TCP, UDP or ICMP inner. None for anything else (the general path then decodes it the same way)."""
        (et, vihl, frag, p, osd, sport, dport, vflags, vni, macs, iet, ivihl, ifrag, ip, isd, l4) = _COMMON(raw)
        if (et != ETH_IPV4 or vihl != 0x45 or p != 17 or dport != self.port or not vflags & 8 or iet != ETH_IPV4
                or ivihl != 0x45 or frag & 0x1FFF or ifrag & 0x1FFF):
            return None
        if ip == 6:
            info = _ports(l4) + _FLAGS[raw[97]] if n >= 98 else _ports(l4)
        elif ip == 17:
            info = _ports(l4)
        elif ip == 1:
            info = _icmp_text(1, l4[0], l4[1])
        else:
            return None
        pair = self.fmt.pair
        osrc, odst = pair(osd)
        dmac, smac = pair(macs)
        isrc, idst = pair(isd)
        return Frame(ts, node, raw, wire_len, osrc, odst, sport, dport, vni >> 8, isrc, idst, smac, dmac,
                     IPV4_PROTOS[ip], info, wire_len - 50)

    def _mark(self, f: Frame, kind: str, why: str) -> None:
        if kind == NOT_VXLAN:
            self.not_vxlan += 1
        else:
            self.malformed += 1
        f.proto, f.error = kind, why
        if not f.length:
            f.length = f.wire_len

    def _decode(self, f: Frame, raw: bytes) -> None:
        n = len(raw)
        if n < 14:
            raise _Bad(MALFORMED, f"outer Ethernet header cut short ({n} of 14 bytes)")
        off, et = 14, _U16(raw, 12)[0]
        if et in VLAN_TAGS:
            off, et = _skip_tags(raw, off, et, "outer")
        fmt = self.fmt
        if et == ETH_IPV4:
            if n < off + 20:
                raise _Bad(MALFORMED, "outer IPv4 header cut short")
            vihl = raw[off]
            ihl = (vihl & 15) * 4
            if vihl >> 4 != 4 or ihl < 20:
                raise _Bad(MALFORMED, f"outer IPv4 header invalid (version {vihl >> 4}, length {ihl})")
            if n < off + ihl:
                raise _Bad(MALFORMED, "outer IPv4 options cut short")
            f.outer_src, f.outer_dst = fmt.pair(raw[off + 12:off + 20])
            if raw[off + 9] != 17:
                raise _Bad(NOT_VXLAN, f"outer IPv4 protocol {proto_name(4, raw[off + 9])}, not UDP")
            if _U16(raw, off + 6)[0] & 0x1FFF:
                raise _Bad(NOT_VXLAN, "outer IPv4 fragment (not the first)")
            off += ihl
        elif et == ETH_IPV6:
            if n < off + 40:
                raise _Bad(MALFORMED, "outer IPv6 header cut short")
            if raw[off] >> 4 != 6:
                raise _Bad(MALFORMED, f"outer IPv6 header invalid (version {raw[off] >> 4})")
            f.outer_src, f.outer_dst = fmt.pair(raw[off + 8:off + 40])
            if raw[off + 6] != 17:
                raise _Bad(NOT_VXLAN, f"outer IPv6 next header {proto_name(6, raw[off + 6])}, not UDP")
            off += 40
        else:
            raise _Bad(NOT_VXLAN, f"outer ethertype 0x{et:04x} is not IP")
        if n < off + 8:
            raise _Bad(MALFORMED, "outer UDP header cut short")
        f.outer_sport, f.outer_dport = _U16X2(raw, off)
        if f.outer_dport != self.port:
            self.udp_ports[f.outer_dport] = self.udp_ports.get(f.outer_dport, 0) + 1
            raise _Bad(NOT_VXLAN, f"UDP port {f.outer_dport} is not the VXLAN port {self.port}")
        if n < off + 16:
            raise _Bad(MALFORMED, "VXLAN header cut short")
        f.vni = _U32(raw, off + 12)[0] >> 8
        if not raw[off + 8] & 0x08:
            raise _Bad(MALFORMED, f"VXLAN flags 0x{raw[off + 8]:02x} lack the I bit (VNI not valid)")
        inner = off + 16
        f.length = f.wire_len - inner
        if n < inner + 14:
            raise _Bad(MALFORMED, "inner Ethernet header cut short")
        f.inner_dst_mac, f.inner_src_mac = fmt.pair(raw[inner:inner + 12])
        off, et = inner + 14, _U16(raw, inner + 12)[0]
        if et in VLAN_TAGS:
            off, et = _skip_tags(raw, off, et, "inner")
        if et == ETH_IPV4:
            self._inner_ipv4(f, raw, off)
        elif et == ETH_IPV6:
            self._inner_ipv6(f, raw, off)
        elif et == ETH_ARP:
            self._inner_arp(f, raw, off)
        else:
            f.inner_src, f.inner_dst = f.inner_src_mac, f.inner_dst_mac
            f.proto = ethertype_name(et)

    def _inner_ipv4(self, f: Frame, raw: bytes, off: int) -> None:
        if len(raw) < off + 20:
            raise _Bad(MALFORMED, "inner IPv4 header cut short")
        vihl = raw[off]
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < 20:
            raise _Bad(MALFORMED, f"inner IPv4 header invalid (version {vihl >> 4}, length {ihl})")
        f.inner_src, f.inner_dst = self.fmt.pair(raw[off + 12:off + 20])
        p = raw[off + 9]
        f.proto = proto_name(4, p)
        if _U16(raw, off + 6)[0] & 0x1FFF:
            f.info = "fragment"
            return
        _l4(f, raw, off + ihl, p)

    def _inner_ipv6(self, f: Frame, raw: bytes, off: int) -> None:
        if len(raw) < off + 40:
            raise _Bad(MALFORMED, "inner IPv6 header cut short")
        if raw[off] >> 4 != 6:
            raise _Bad(MALFORMED, f"inner IPv6 header invalid (version {raw[off] >> 4})")
        f.inner_src, f.inner_dst = self.fmt.pair(raw[off + 8:off + 40])
        nh, off = raw[off + 6], off + 40
        for _ in range(MAX_EXT_HEADERS):
            if nh not in IPV6_EXT_HEADERS:
                break
            if len(raw) < off + 8:
                raise _Bad(MALFORMED, "inner IPv6 extension header cut short")
            if nh == 44:                       # fragment header: fixed 8 bytes
                if _U16(raw, off + 2)[0] & 0xFFF8:
                    f.proto, f.info = proto_name(6, raw[off]), "fragment"
                    return
                nh, off = raw[off], off + 8
            elif nh == 51:                     # AH: length in 4-byte units, minus 2
                nh, off = raw[off], off + (raw[off + 1] + 2) * 4
            else:
                nh, off = raw[off], off + (raw[off + 1] + 1) * 8
        f.proto = proto_name(6, nh)
        _l4(f, raw, off, nh)

    def _inner_arp(self, f: Frame, raw: bytes, off: int) -> None:
        if len(raw) < off + 8:
            raise _Bad(MALFORMED, "inner ARP header cut short")
        htype, ptype, hlen, plen, op = _ARP_HDR(raw, off)
        f.proto = "ARP"
        if htype != 1 or ptype != ETH_IPV4 or hlen != 6 or plen != 4:
            f.inner_src, f.inner_dst = f.inner_src_mac, f.inner_dst_mac
            f.info = f"op {op} (hardware {htype}, protocol 0x{ptype:04x})"
            return
        if len(raw) < off + 28:
            raise _Bad(MALFORMED, "inner ARP body cut short")
        fmt = self.fmt
        f.inner_src = fmt(raw[off + 14:off + 18])
        f.inner_dst = fmt(raw[off + 24:off + 28])
        if op == 1:
            f.info = f"who-has {f.inner_dst} tell {f.inner_src}"
        elif op == 2:
            f.info = f"{f.inner_src} is-at {fmt(raw[off + 8:off + 14])}"
        else:
            f.info = f"op {op}"


def _skip_tags(raw: bytes, off: int, et: int, which: str) -> tuple[int, int]:
    """Skip up to MAX_TAGS VLAN tags; return (offset of the payload, its ethertype)."""
    tags = 0
    while et in VLAN_TAGS and tags < MAX_TAGS:
        if len(raw) < off + 4:
            raise _Bad(MALFORMED, f"{which} 802.1Q tag cut short")
        et = _U16(raw, off + 2)[0]
        off += 4
        tags += 1
    return off, et


def _l4(f: Frame, raw: bytes, off: int, p: int) -> None:
    """Ports (TCP/UDP) or type and code (ICMP/ICMPv6) into ``f.info``."""
    need = L4_NEEDED.get(p)
    if need is None:
        return
    if len(raw) < off + need:
        raise _Bad(MALFORMED, f"inner {f.proto} header cut short")
    if need == 4:
        ports = _ports(raw[off:off + 4])
        f.info = ports + _FLAGS[raw[off + 13]] if p == 6 and len(raw) >= off + 14 else ports
    else:
        f.info = _icmp_text(p, raw[off], raw[off + 1])


def _ports(key: bytes) -> str:
    """"sport > dport" of the 4 port bytes, cached (ports repeat within flows)."""
    ports = _PORTS.get(key)
    if ports is None:
        if len(_PORTS) >= 65536:
            _PORTS.clear()
        ports = _PORTS[key] = "%d > %d" % _U16X2(key)
    return ports


def _icmp_text(p: int, t: int, code: int) -> str:
    name = (ICMP_TYPES if p == 1 else ICMP6_TYPES).get(t)
    return f"{name} (code {code})" if name and code else (name or f"type {t} code {code}")
