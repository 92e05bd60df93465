"""Replay a two-ended recording (every node's capture of the same traffic, in one pcap) as sightings.

A pcap does not say which node captured a frame. In a recording of both ends each VXLAN frame is in it
twice: the first copy is its source node's sighting, a later copy with the same identity
(:func:`core.links.identity.frame_key`) is its destination node's (a third is a duplicate arriving).
A frame in it once was seen leaving only: the matcher counts it lost. Nodes are known by their
underlay addresses (``names.nodes``), from the recording's JSON sidecar (``{"names": {...}}`` next to
the pcap) when there is one.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from core.capture.decode import VxlanDecoder
from core.capture.names import apply_names, names_from_json
from core.capture.pcap import PcapFileReader
from core.errors import UsageError
from core.links.identity import frame_key
from core.model import Frame, FrameBatch, Inventory, Names

BATCH = 2000


class TwoEndedReplay:
    """``sightings(nodes)`` (a capture function for :class:`core.links.service.LinksService`) and
    ``node_names(nodes)`` over the recording at ``pcap``; ``names`` are used when it has no sidecar."""

    def __init__(self, pcap: Path, inventory: Inventory, names: Names) -> None:
        self.pcap, self.inventory, self.names = pcap, inventory, names
        side = pcap.with_suffix(".json")
        if side.is_file():
            try:
                self.names = names_from_json(json.loads(side.read_text()).get("names") or {})
            except (OSError, ValueError) as e:
                raise UsageError(f"{side}: cannot read the recording's names: {e}") from e

    def node_names(self, nodes: list[str] | None) -> list[str]:
        known = [n.name for n in self.inventory.nodes]
        unknown = [n for n in nodes or [] if n not in known]
        if unknown:
            raise UsageError(f"unknown node {', '.join(unknown)}; known nodes: {', '.join(known)}")
        return list(dict.fromkeys(nodes or known))

    async def sightings(self, nodes: list[str]) -> AsyncIterator[FrameBatch]:
        if not self.pcap.is_file():
            yield FrameBatch([], notices=[f"{self.pcap.name}: no two-ended recording to replay "
                                          "(record one with tests/record_links.py)"])
            return
        yield FrameBatch([], notices=[f"replaying {self.pcap.name} (recorded on both ends)"])
        frames = await asyncio.to_thread(self._read)
        for i in range(0, len(frames), BATCH):
            yield FrameBatch(frames[i:i + BATCH])
            await asyncio.sleep(0)

    def _read(self) -> list[Frame]:
        decoder = VxlanDecoder(self.inventory.cluster.vxlan_port)
        frames = [decoder.decode(data, ts, wirelen) for ts, _cap, wirelen, data in PcapFileReader(self.pcap)]
        apply_names(frames, self.names)
        seen: set[bytes] = set()
        for f in frames:
            key = frame_key(f.raw) if f.vni is not None else None
            if key is None or key not in seen:
                f.node = f.outer_src_name or ""
                if key is not None:
                    seen.add(key)
            else:
                f.node = f.outer_dst_name or ""
        return frames
