"""Text and JSON views of frames and flows, named through an optional :class:`core.model.Names`.

Shared by the CLI (`capture`), and usable by the console and the SSH server. Unknown values stay
visible raw: a name is shown next to the address, never instead of it.
"""
from __future__ import annotations

import time

from core.capture.names import apply_names
from core.model import FlowStat, Frame, Names


def _with_names(frame: Frame, names: Names | None) -> Frame:
    """``frame`` with names filled in from ``names`` (in place) when given."""
    if names is not None:
        apply_names((frame,), names)
    return frame


def clock(ts: float) -> str:
    """Time of day in UTC with microseconds, as tcpdump prints it."""
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(round(ts % 1 * 1e6)) % 1000000:06d}"


def _named(addr: str, name: str | None) -> str:
    if not addr:
        return "-"
    return f"{addr}({name})" if name else addr


def frame_line(frame: Frame, names: Names | None = None) -> str:
    """One line: time, node, outer src > dst, VNI and network, inner src > dst, proto, info, length."""
    f = _with_names(frame, names)
    vni = "-" if f.vni is None else str(f.vni)
    net = f" ({f.network})" if f.network else ""
    info = f" {f.info}" if f.info else ""
    err = f" !{f.error}" if f.error else ""
    return (f"{clock(f.ts)} {f.node or '-'} {_named(f.outer_src, f.outer_src_name)} > "
            f"{_named(f.outer_dst, f.outer_dst_name)} vni {vni}{net} {_named(f.inner_src, f.src_name)} > "
            f"{_named(f.inner_dst, f.dst_name)} {f.proto}{info} len {f.length}{err}")


def frame_json(frame: Frame, names: Names | None = None) -> dict:
    """A JSON-ready dict of the frame (no raw bytes)."""
    f = _with_names(frame, names)
    return {"ts": f.ts, "node": f.node, "outer_src": f.outer_src, "outer_dst": f.outer_dst,
            "outer_src_name": f.outer_src_name, "outer_dst_name": f.outer_dst_name,
            "outer_sport": f.outer_sport, "outer_dport": f.outer_dport, "vni": f.vni, "network": f.network,
            "inner_src": f.inner_src, "inner_dst": f.inner_dst, "src_name": f.src_name, "dst_name": f.dst_name,
            "inner_src_mac": f.inner_src_mac, "inner_dst_mac": f.inner_dst_mac, "proto": f.proto,
            "info": f.info, "length": f.length, "wire_len": f.wire_len, "error": f.error}


def flow_json(s: FlowStat) -> dict:
    return {"vni": s.vni, "network": s.network, "inner_src": s.inner_src, "inner_dst": s.inner_dst,
            "src_name": s.src_name, "dst_name": s.dst_name, "proto": s.proto, "packets": s.packets,
            "bytes": s.bytes, "pps": round(s.pps, 3), "bps": round(s.bps, 3)}


FLOW_HEADER = ("VNI", "NETWORK", "INNER SRC", "INNER DST", "PROTO", "PACKETS", "BYTES", "PPS", "BPS")


def flow_table_lines(stats: list[FlowStat]) -> list[str]:
    """The per-flow table as aligned text lines (header first)."""
    rows = [FLOW_HEADER] + [
        ("-" if s.vni is None else str(s.vni), s.network or "-", _named(s.inner_src, s.src_name),
         _named(s.inner_dst, s.dst_name), s.proto, str(s.packets), str(s.bytes), f"{s.pps:.1f}", f"{s.bps:.0f}")
        for s in stats]
    widths = [max(len(r[i]) for r in rows) for i in range(len(FLOW_HEADER))]
    right = {0, 5, 6, 7, 8}
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]
