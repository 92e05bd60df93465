"""What the live and the recorded capture parts both do with frames already decoded: one frame's
full detail (scapy), per-flow counters, and saving to a pcap where :class:`core.files.SaveArea` allows.
"""
from __future__ import annotations

import asyncio

from core.capture.flows import FlowTable
from core.capture.pcap import write_pcap
from core.files import SaveArea
from core.model import FlowStat, Frame, FrameDetail, Names, SaveTarget


class FrameTools:
    """Detail, flows and saving for frames decoded with ``vxlan_port`` as the VXLAN port."""

    def __init__(self, vxlan_port: int, saves: SaveArea) -> None:
        self.vxlan_port, self.saves = vxlan_port, saves

    def detail(self, frame: Frame) -> FrameDetail:
        """Every layer and field (scapy) and a hex dump of one frame."""
        from core.capture.detail import frame_detail  # scapy: only when a frame is opened
        return frame_detail(frame.raw, self.vxlan_port)

    def flows(self, frames: list[Frame], names: Names | None) -> list[FlowStat]:
        """Per-flow packets, bytes and current rates of ``frames``, most bytes first, named with ``names``."""
        table = FlowTable()
        table.add_many(frames)
        return table.flows(names)

    def save_target(self, name: str) -> SaveTarget:
        """Where saving as ``name`` would write (ReadOnlyError / UsageError when it may not)."""
        return self.saves.target(name)

    async def save_pcap(self, frames: list[Frame], path: str, *, replace: bool = False) -> int:
        """Write ``frames`` to a pcap (pcapng by extension) that tcpdump and Wireshark open; returns how many."""
        out = self.saves.open(path, replace=replace)
        return await asyncio.to_thread(write_pcap, out, list(frames))
