"""Text and JSON forms of a :class:`core.model.LinksSnapshot` (CLI; the console draws its own grid)."""
from __future__ import annotations

from core.model import LinksSnapshot, LinkStat


def row_json(r: LinkStat) -> dict:
    return {"src": r.src, "dst": r.dst, "vni": r.vni, "sent": r.sent, "received": r.received, "lost": r.lost,
            "loss": round(r.loss, 6), "reordered": r.reordered, "duplicated": r.duplicated, "rx_only": r.rx_only,
            "delay_p50_ms": r.delay_p50_ms, "delay_p99_ms": r.delay_p99_ms, "delay_max_ms": r.delay_max_ms,
            "offset_ms": r.offset_ms, "uncertainty_ms": r.uncertainty_ms}


def snapshot_json(s: LinksSnapshot, per_vni: bool = False) -> dict:
    """``{"pairs": [...]}`` (one row per ordered pair, or per pair and VNI) plus what the run covered."""
    rows = s.per_vni if per_vni else s.pairs
    return {"pairs": [row_json(r) for r in rows], "nodes": s.nodes, "seconds": round(s.span, 3),
            "frames": s.frames, "pending": s.pending, "evicted": s.evicted, "in_flight": s.in_flight,
            "unwatched": s.unwatched, "clock_notes": s.clock_notes}


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def snapshot_lines(s: LinksSnapshot, per_vni: bool = False) -> list[str]:
    """An aligned table, then the clock notes."""
    rows = s.per_vni if per_vni else s.pairs
    w = max([len(r.src) for r in rows] + [len(r.dst) for r in rows] + [3])
    head = (f"{'SRC':<{w}}  {'DST':<{w}}  {'VNI':>5}  {'SENT':>8}  {'RECV':>8}  {'LOST':>7}  {'LOSS':>7}  "
            f"{'REORD':>5}  {'DUP':>5}  {'P50 ms':>8}  {'P99 ms':>8}  {'±ms':>7}")
    out = [head]
    for r in rows:
        out.append(f"{r.src:<{w}}  {r.dst:<{w}}  {'all' if r.vni is None else r.vni:>5}  {r.sent:>8}  "
                   f"{r.received:>8}  {r.lost:>7}  {r.loss:>7.2%}  {r.reordered:>5}  {r.duplicated:>5}  "
                   f"{_num(r.delay_p50_ms):>8}  {_num(r.delay_p99_ms):>8}  {_num(r.uncertainty_ms):>7}")
    out += [f"clock: {n}" for n in s.clock_notes]
    return out


def summary_line(s: LinksSnapshot) -> str:
    extra = []
    if s.in_flight:
        extra.append(f"{s.in_flight} in flight at the end (not judged)")
    if s.evicted:
        extra.append(f"{s.evicted} sightings evicted to bound memory (not judged)")
    if s.unwatched:
        extra.append(f"{s.unwatched} frames to or from nodes not captured")
    return f"{s.frames} sightings over {s.span:.1f} s" + (": " + "; ".join(extra) if extra else "")
