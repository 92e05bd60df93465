"""The capture part of :class:`core.recorded.service.RecordedService`: frames replayed from a pcap.

``capture(nodes)`` reads the recording's pcap (``state["capture"]["pcap"]``, relative to the state
file; else ``capture_small.pcap`` next to it), decodes it with the fast path
(:mod:`core.capture.decode`), names it (:mod:`core.capture.names`) and yields it as :class:`FrameBatch`
batches, as a live capture on ``nodes`` would: a frame is labelled with the chosen node that sent
it (its outer source), else the chosen node that received it; frames between other nodes are left
out. Batches are cut by count, so a replay is deterministic; with ``realtime`` set (or
``state["capture"]["realtime"]``) it also waits the recorded gaps between frames, for demos.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from core import checks
from core.access import WriteGuard
from core.capture.decode import VxlanDecoder
from core.capture.names import apply_names, build_names, merge_names, names_from_json
from core.capture.pcap import PcapFileReader
from core.capture.tools import FrameTools
from core.errors import CaptureError, OverlayError
from core.files import SaveArea
from core.model import FlowStat, Frame, FrameBatch, FrameDetail, Inventory, Names, NetworkInfo, SaveTarget

DEFAULT_PCAP = "capture_small.pcap"
BATCH = 500


class RecordedCapture:
    """capture / replay / names / frame_detail / flows / save_pcap over recorded data.

    ``state`` is the recorded JSON, ``state_path`` where it came from; ``list_networks`` is the
    recorded service's (it names VNIs and containers).
    """

    def __init__(self, state: dict[str, Any], state_path: Path | None, inventory: Inventory,
                 list_networks: Callable[[], Awaitable[list[NetworkInfo]]], *, realtime: bool = False,
                 batch: int = BATCH, saves: SaveArea | None = None) -> None:
        self.state, self.state_path, self.inventory, self.list_networks = state, state_path, inventory, list_networks
        self.saves = saves or SaveArea(WriteGuard())
        self.tools = FrameTools(inventory.cluster.vxlan_port, self.saves)
        self.realtime, self.batch = realtime, batch
        self.last_names: Names | None = None

    # --- names ---------------------------------------------------------------------------------
    async def names(self) -> Names:
        """Names from the recorded networks and inventory, plus any recorded ``names``."""
        recorded = names_from_json(self.state.get("names") or {})
        try:
            nets = await self.list_networks()
        except OverlayError:            # a recorded networks error still leaves the recorded names
            nets = []
        self.last_names = merge_names(recorded, build_names(self.inventory, nets))
        return self.last_names

    # --- capture and replay --------------------------------------------------------------------
    def capture_pcap_path(self) -> Path:
        """Where the recording's frames are."""
        cap = self.state.get("capture") or {}
        name = cap.get("pcap") or DEFAULT_PCAP
        base = self.state_path.parent if self.state_path else Path.cwd()
        return Path(name) if os.path.isabs(name) else base / name

    async def capture(self, nodes: list[str], **_opts) -> AsyncIterator[FrameBatch]:
        """Replay the recording as a capture on ``nodes`` (every node when empty)."""
        chosen = [n.name for n in checks.nodes(self.inventory, nodes)]
        path = self.capture_pcap_path()
        if not path.is_file():
            raise CaptureError(f"{path}: no recorded capture to replay (record one with `overlay-tui record`)")
        names = await self.names()
        realtime = self.realtime or bool((self.state.get("capture") or {}).get("realtime"))
        yield FrameBatch([], notices=[f"replaying {path.name} (recorded) on {', '.join(chosen)}"])
        count = 0
        async for batch in self._batches(path, names, chosen, realtime):
            count += len(batch.frames)
            yield batch
        yield FrameBatch([], notices=[f"recording ended: {count} frames replayed"])

    async def replay(self, path: str) -> AsyncIterator[FrameBatch]:
        """Every frame of the pcap at ``path``, decoded and named, in batches."""
        names = await self.names()
        async for batch in self._batches(Path(path), names, None, False):
            yield batch

    async def _batches(self, path: Path, names: Names, chosen: list[str] | None,
                       realtime: bool) -> AsyncIterator[FrameBatch]:
        decoder = VxlanDecoder(self.inventory.cluster.vxlan_port)
        by_addr = {addr: node for addr, node in names.nodes.items()}
        wanted = set(chosen or ())
        out: list[Frame] = []
        malformed_before = 0
        prev_ts: float | None = None
        reader = PcapFileReader(path)
        decode = decoder.decode
        for f in (decode(data, ts, wirelen) for ts, _cap, wirelen, data in reader):
            if chosen is not None:
                node = _capturing_node(f, by_addr, wanted, chosen[0])
                if node is None:
                    continue
                f.node = node
            out.append(f)
            if realtime and prev_ts is not None and f.ts > prev_ts:
                await asyncio.sleep(min(f.ts - prev_ts, 1.0))
            prev_ts = f.ts
            if len(out) >= self.batch or realtime:
                yield self._named_batch(out, names, decoder, malformed_before)
                malformed_before = decoder.malformed + decoder.not_vxlan
                out = []
                await asyncio.sleep(0)            # let the UI draw between batches
        if out or reader.truncated:
            batch = self._named_batch(out, names, decoder, malformed_before)
            if reader.truncated:
                batch.notices.append(reader.truncated)
            yield batch

    @staticmethod
    def _named_batch(frames: list[Frame], names: Names, decoder: VxlanDecoder, before: int) -> FrameBatch:
        apply_names(frames, names)
        return FrameBatch(frames, malformed=decoder.malformed + decoder.not_vxlan - before)

    # --- one frame, flows, files ---------------------------------------------------------------
    def frame_detail(self, frame: Frame) -> FrameDetail:
        return self.tools.detail(frame)

    def flows(self, frames: list[Frame]) -> list[FlowStat]:
        return self.tools.flows(frames, self.last_names)

    def save_target(self, name: str) -> SaveTarget:
        return self.tools.save_target(name)

    async def save_pcap(self, frames: list[Frame], path: str, *, replace: bool = False) -> int:
        return await self.tools.save_pcap(frames, path, replace=replace)


def _capturing_node(f: Frame, by_addr: dict[str, str], wanted: set[str], fallback: str) -> str | None:
    src, dst = by_addr.get(f.outer_src), by_addr.get(f.outer_dst)
    if src in wanted:
        return src
    if dst in wanted:
        return dst
    if src is None and dst is None:
        return fallback                  # not between known nodes (or malformed): keep it visible
    return None
