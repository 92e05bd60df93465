"""Per-flow counters over decoded frames: flows, per-VNI totals, top talkers, current rates.

A flow is keyed ``(vni, inner_src, inner_dst, proto)`` exactly as the Frame shows them (malformed
and non-VXLAN frames form flows of their own, so nothing is silently lost); ``bytes`` counts
``Frame.length`` (the inner frame's length on the wire, or the whole frame when there is no inner one).

The current rate is the traffic of the last ``window`` seconds, counted in ``slots`` time buckets
of ``window / slots`` seconds (bucket = floor(ts / step)), up to the newest timestamp seen (or a
given ``now``). The batch path (:mod:`core.capture.batch`) feeds the same buckets, so both agree exactly.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from core.model import FlowDelta, FlowStat, Frame, Names

FlowKey = tuple  # (vni | None, inner_src, inner_dst, proto)
ANY = "*"
DEFAULT_WINDOW = 2.0
DEFAULT_SLOTS = 10


class _Flow:
    """Counters of one flow: totals and the recent time buckets {bucket: [packets, bytes]}."""

    __slots__ = ("packets", "bytes", "recent")

    def __init__(self) -> None:
        self.packets = self.bytes = 0
        self.recent: dict[int, list[int]] = {}


class FlowTable:
    """Accumulates flows from frames (``add``) or from pre-aggregated counts (``merge``)."""

    def __init__(self, window: float = DEFAULT_WINDOW, slots: int = DEFAULT_SLOTS) -> None:
        if window <= 0 or slots < 1:
            raise ValueError("flow rate window must be > 0 seconds with at least one slot")
        self.window, self.slots = float(window), int(slots)
        self.step = self.window / self.slots
        self.frames = self.malformed = self.not_vxlan = 0
        self.newest_bucket: int | None = None
        self.newest_ts: float | None = None
        self._flows: dict[FlowKey, _Flow] = {}

    def __len__(self) -> int:
        return len(self._flows)

    def bucket(self, ts: float) -> int:
        return math.floor(ts / self.step)

    def add(self, frame: Frame) -> None:
        """Count one decoded frame (the same as ``merge`` of one frame, inlined: it runs per frame)."""
        key = (frame.vni, frame.inner_src, frame.inner_dst, frame.proto)
        fl = self._flows.get(key)
        if fl is None:
            fl = self._flows[key] = _Flow()
        n, ts = frame.length, frame.ts
        fl.packets += 1
        fl.bytes += n
        self.frames += 1
        if self.newest_ts is None or ts > self.newest_ts:
            self.newest_ts = ts
        b = math.floor(ts / self.step)
        if self.newest_bucket is None or b > self.newest_bucket:
            self.newest_bucket = b
        cur = fl.recent.get(b)
        if cur is not None:
            cur[0] += 1
            cur[1] += n
        else:
            fl.recent[b] = [1, n]
            if len(fl.recent) > 2 * self.slots:
                oldest = self.newest_bucket - self.slots
                fl.recent = {k: v for k, v in fl.recent.items() if k > oldest}
        if frame.error is not None:
            if frame.proto == "NOT-VXLAN":
                self.not_vxlan += 1
            else:
                self.malformed += 1

    def add_many(self, frames: Iterable[Frame]) -> None:
        for f in frames:
            self.add(f)

    def merge(self, key: FlowKey, packets: int, nbytes: int, recent: dict[int, list[int]],
              newest_ts: float | None = None, frames: int | None = None) -> None:
        """Add counts for one flow; ``recent`` maps time buckets to [packets, bytes] of those counts."""
        fl = self._flows.get(key)
        if fl is None:
            fl = self._flows[key] = _Flow()
        fl.packets += packets
        fl.bytes += nbytes
        self.frames += packets if frames is None else frames
        if newest_ts is not None and (self.newest_ts is None or newest_ts > self.newest_ts):
            self.newest_ts = newest_ts
        for b, (p, by) in recent.items():
            if self.newest_bucket is None or b > self.newest_bucket:
                self.newest_bucket = b
            cur = fl.recent.get(b)
            if cur is None:
                fl.recent[b] = [p, by]
            else:
                cur[0] += p
                cur[1] += by
        if len(fl.recent) > 2 * self.slots and self.newest_bucket is not None:   # buckets never in a window again
            oldest = self.newest_bucket - self.slots
            fl.recent = {b: v for b, v in fl.recent.items() if b > oldest}

    def deltas(self) -> list[FlowDelta]:
        """Every flow's counts as :class:`FlowDelta` rows (a table of one batch: what that batch adds)."""
        return [FlowDelta(k[0], k[1], k[2], k[3], fl.packets, fl.bytes, {b: list(v) for b, v in fl.recent.items()})
                for k, fl in self._flows.items()]

    def merge_deltas(self, deltas: Iterable[FlowDelta]) -> None:
        """Add another table's :meth:`deltas` (with the same window and slots): equal to adding its frames."""
        for d in deltas:
            self.merge((d.vni, d.inner_src, d.inner_dst, d.proto), d.packets, d.bytes, d.recent)
            if d.proto == "NOT-VXLAN":
                self.not_vxlan += d.packets
            elif d.proto == "MALFORMED":
                self.malformed += d.packets

    def _rate(self, fl: _Flow, first_bucket: int) -> tuple[float, float]:
        p = by = 0
        for b, (bp, bb) in fl.recent.items():
            if b > first_bucket:
                p += bp
                by += bb
        return p / self.window, by * 8 / self.window

    def flows(self, names: Names | None = None, now: float | None = None) -> list[FlowStat]:
        """Every flow, most bytes first (ties: by key), rates over the window ending at ``now``.

        ``now`` defaults to the newest frame's time (right for a file); a live view passes the wall
        clock (``time.time()``) so the rate of a flow that went quiet falls to 0.
        """
        end = self.bucket(now) if now is not None else self.newest_bucket
        first = (end if end is not None else 0) - self.slots
        out = []
        for key, fl in self._flows.items():
            pps, bps = self._rate(fl, first)
            out.append(_stat(key, fl.packets, fl.bytes, pps, bps, names))
        out.sort(key=_order)
        return out

    def vni_totals(self, names: Names | None = None, now: float | None = None) -> list[FlowStat]:
        """One FlowStat per VNI (inner_src, inner_dst and proto are "*")."""
        return _group(self.flows(names, now), lambda s: (s.vni, ANY, ANY, ANY), names)

    def top_talkers(self, n: int = 10, names: Names | None = None, now: float | None = None) -> list[FlowStat]:
        """The ``n`` inner sources (per VNI) sending the most bytes (inner_dst and proto are "*")."""
        return _group(self.flows(names, now), lambda s: (s.vni, s.inner_src, ANY, ANY), names)[:n]

    def counts(self) -> dict[str, int]:
        return {"frames": self.frames, "malformed": self.malformed, "not_vxlan": self.not_vxlan,
                "flows": len(self._flows)}


def _order(s: FlowStat):
    return (-s.bytes, -s.packets, -1 if s.vni is None else s.vni, s.inner_src, s.inner_dst, s.proto)


def _stat(key: FlowKey, packets: int, nbytes: int, pps: float, bps: float, names: Names | None) -> FlowStat:
    vni, src, dst, proto = key
    s = FlowStat(vni, None, src, dst, proto, packets, nbytes, pps, bps)
    if names is not None:
        if vni is not None:
            s.network = names.networks.get(vni)
        s.src_name = names.containers.get(src)
        s.dst_name = names.containers.get(dst)
    return s


def _group(stats: list[FlowStat], keyfn, names: Names | None) -> list[FlowStat]:
    acc: dict[FlowKey, list] = {}
    for s in stats:
        a = acc.setdefault(keyfn(s), [0, 0, 0.0, 0.0])
        a[0] += s.packets
        a[1] += s.bytes
        a[2] += s.pps
        a[3] += s.bps
    out = [_stat(k, int(v[0]), int(v[1]), v[2], v[3], names) for k, v in acc.items()]
    out.sort(key=_order)
    return out
