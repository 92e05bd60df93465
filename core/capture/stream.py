"""Bytes of one node's ``tcpdump -w -`` stream -> decoded frames labelled with that node.

Glue between :class:`core.capture.pcap.PcapStreamParser` (chunks split anywhere) and the fast path
:class:`core.capture.decode.VxlanDecoder`; counts malformed frames so a batch can report them.
"""
from __future__ import annotations

from core.capture.decode import VxlanDecoder
from core.capture.pcap import PcapStreamParser
from core.model import Frame


class StreamDecoder:
    """Feed it chunks of a pcap byte stream; get back the frames they completed."""

    __slots__ = ("node", "parser", "decoder")

    def __init__(self, node: str, vxlan_port: int = 4789) -> None:
        self.node = node
        self.parser = PcapStreamParser(f"{node}: capture stream")
        self.decoder = VxlanDecoder(vxlan_port)

    def feed(self, chunk: bytes) -> tuple[list[Frame], int]:
        """Frames completed by ``chunk`` and how many of them are malformed (or not VXLAN)."""
        records = self.parser.feed(chunk)
        if not records:
            return [], 0
        dec = self.decoder
        before = dec.malformed + dec.not_vxlan
        decode, node = dec.decode, self.node
        frames = [decode(data, ts, wirelen, node) for ts, _cap, wirelen, data in records]
        return frames, dec.malformed + dec.not_vxlan - before

    @property
    def frames(self) -> int:
        return self.decoder.frames
