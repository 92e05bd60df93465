"""Columns of the live frame list and the formatting of one frame into one line of segments.

Only rows on screen are ever formatted (formatting an address costs more than decoding it), so this
module is free to build strings; :func:`layout` fits the columns to the list's width.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style

from core.model import Frame

# name, title, width (fixed columns) or minimum width (flexible ones), share of the spare width
_COLUMNS = (
    ("no", "No.", 6, 0),
    ("time", "Time (UTC)", 15, 0),
    ("node", "Node", 12, 0),
    ("outer", "Outer src > dst", 20, 2),
    ("vni", "VNI net", 8, 1),
    ("inner", "Inner src > dst", 24, 3),
    ("proto", "Proto", 6, 0),
    ("len", "Len", 5, 0),
    ("info", "Info", 0, 3),
)
INFO_FROM = 24
_RIGHT = ("no", "len")   # right-aligned numbers          # the info column shows only when the spare width reaches this

STYLES = {
    "no": Style(dim=True), "time": Style(color="cyan"), "node": Style(color="magenta"),
    "outer": Style(), "vni": Style(color="yellow"), "inner": Style(bold=True),
    "proto": Style(color="green"), "len": Style(), "info": Style(dim=True),
}
BAD_STYLE = Style(color="red")


@dataclass(frozen=True)
class Column:
    """One column placed at a width."""

    name: str
    title: str
    width: int


def layout(width: int) -> tuple[Column, ...]:
    """Columns that fit ``width`` cells (one space between columns); the flexible ones share the rest.

    The info column (ports, ICMP type...) only appears when there is room for it (the detail screen
    shows it anyway); on a narrow terminal the node and number columns go first.
    """
    cols = list(_COLUMNS)
    if width - sum(c[2] + 1 for c in cols) < INFO_FROM:
        cols.pop()
    for dispensable in ("node", "no"):
        if sum(c[2] + 1 for c in cols) - 1 <= width:
            break
        cols = [c for c in cols if c[0] != dispensable]
    spare = width - sum(c[2] + 1 for c in cols) + 1
    shares = sum(c[3] for c in cols)
    if spare < 0:                    # still too narrow: the flexible columns give up cells, down to 8 each
        return tuple(Column(name, title, max(8, minimum + (spare * share) // shares) if share else minimum)
                     for name, title, minimum, share in cols)
    return tuple(Column(name, title, minimum + (spare * share) // shares) for name, title, minimum, share in cols)


def header_text(cols: tuple[Column, ...], width: int) -> str:
    """The header line for ``cols``, cut to ``width``."""
    return " ".join(c.title[:c.width].rjust(c.width) if c.name in _RIGHT else c.title[:c.width].ljust(c.width)
                    for c in cols)[:width]


def _side(addr: str, name: str | None) -> str:
    """A container's name (without its "@node": the outer addresses say where it runs), else the address."""
    return name.split("@", 1)[0] if name else (addr or "?")


def elide_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells by dropping its middle: names of one lab differ at the end
    (probe-docker-node1, probe-docker-node2), so the end is kept."""
    if len(text) <= width:
        return text
    if width < 4:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


_SEPARATORS = "-_"


def shared_prefix(a: str, b: str) -> str:
    """The prefix ``a`` and ``b`` share, up to and including its last separator ("docker-", "probe-docker-");
    "" when they share no whole word (a few characters would not be worth an ellipsis)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    cut = max(a.rfind(c, 0, n) for c in _SEPARATORS) + 1
    return a[:cut] if cut >= 3 else ""


def fit_pair(src: str, dst: str, width: int) -> str:
    """``src > dst`` in ``width`` cells; when too long, each side is shortened in its middle,
    the shorter side keeping what it does not need of its half."""
    if len(src) + 3 + len(dst) <= width:
        return f"{src} > {dst}"
    shared = shared_prefix(src, dst)
    if shared:          # names of one lab share a prefix: say it once (src in full, dst without it)
        for pair in (f"{src} > …{dst[len(shared):]}", f"…{src[len(shared):]} > …{dst[len(shared):]}"):
            if len(pair) <= width:
                return pair
    room = max(width - 3, 2)
    half = room // 2
    if len(src) <= half:
        return f"{src} > {elide_middle(dst, room - len(src))}"
    if len(dst) <= room - half:
        return f"{elide_middle(src, room - len(dst))} > {dst}"
    return f"{elide_middle(src, half)} > {elide_middle(dst, room - half)}"


def cells(seq: int, f: Frame) -> dict[str, str | tuple[str, str]]:
    """The text of each column for frame number ``seq`` (0-based); address columns are (src, dst)."""
    ts = f.ts
    stamp = time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(round(ts * 1e6)) % 1_000_000:06d}"
    vni = "" if f.vni is None else (f"{f.vni} {f.network}" if f.network else str(f.vni))
    return {
        "no": str(seq + 1),
        "time": stamp,
        "node": f.node or "-",
        "outer": (_side(f.outer_src, f.outer_src_name), _side(f.outer_dst, f.outer_dst_name)),
        "vni": vni,
        "inner": (_side(f.inner_src, f.src_name), _side(f.inner_dst, f.dst_name)),
        "proto": f.proto,
        "len": str(f.length or f.wire_len),
        "info": f.error or f.info,
    }


def row_segments(seq: int, f: Frame, cols: tuple[Column, ...], width: int,
                 base: Style | None = None) -> list[Segment]:
    """One line of segments for frame ``seq``, exactly ``width`` cells wide."""
    text = cells(seq, f)
    bad = bool(f.error) or f.proto in ("MALFORMED", "NOT-VXLAN")
    segs: list[Segment] = []
    used = 0
    for c in cols:
        if used >= width:
            break
        value = text[c.name]
        if isinstance(value, tuple):
            value = fit_pair(*value, c.width)
        cell = (value[:c.width - 1] + "…") if len(value) > c.width else value.ljust(c.width)
        if c.name in _RIGHT:
            cell = value[-c.width:].rjust(c.width)
        cell = cell[:width - used]
        style = BAD_STYLE if bad and c.name in ("proto", "info") else STYLES[c.name]
        segs.append(Segment(cell, base + style if base else style))
        used += len(cell)
        if used < width:
            segs.append(Segment(" ", base))
            used += 1
    if used < width:
        segs.append(Segment(" " * (width - used), base))
    return segs
