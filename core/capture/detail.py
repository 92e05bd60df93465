"""Full detail of one selected frame with scapy: every layer and field, and a hex dump.

scapy is imported lazily, on the first detail asked for (it takes about a second to import), so the
fast path and the CLI start quickly. VXLAN is bound to the configured UDP port as well as scapy's
defaults (4789, 8472, ...). scapy never decides what the live list shows: that is the fast path's job.
"""
from __future__ import annotations

from core.model import FrameDetail

_bound_ports: set[int] = set()


def _scapy_ether(port: int):
    """Import scapy (once) and make it decode UDP ``port`` as VXLAN; returns the Ether class."""
    import logging
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    import scapy.layers.inet6  # noqa: F401  (dissect inner IPv6 and ICMPv6 too)
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import bind_layers

    if port not in _bound_ports:
        bind_layers(UDP, VXLAN, dport=port)
        _bound_ports.add(port)
    return Ether


def frame_detail(raw: bytes, port: int = 4789) -> FrameDetail:
    """scapy's ``show()`` of every layer and a hex dump of ``raw``; never raises for bad bytes."""
    from scapy.utils import hexdump

    ether = _scapy_ether(port)
    try:
        pkt = ether(raw)
        layers = pkt.show(dump=True)
    except Exception as e:  # noqa: BLE001 - scapy raises anything on garbage: still show the bytes
        layers = f"scapy could not dissect this frame: {type(e).__name__}: {e}"
    return FrameDetail(layers=layers, hexdump=hexdump(raw, dump=True) or "")


def dissect(raw: bytes, port: int = 4789):
    """The scapy packet for ``raw`` (used by the benchmark to time scapy's dissection)."""
    return _scapy_ether(port)(raw)
