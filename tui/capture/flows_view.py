"""The capture pane's flows view: per-flow packets, bytes and rates, per-VNI totals, top talkers.

Tens of rows that change in place, so a DataTable fits. The pane computes the
:class:`core.model.FlowStat` list off the event loop and hands it to :meth:`FlowsView.show`.
"""
from __future__ import annotations

from collections import defaultdict

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from core.model import FlowStat

COLUMNS = (("vni", "VNI network"), ("src", "Inner src"), ("dst", "Inner dst"), ("proto", "Proto"),
           ("packets", "Packets"), ("bytes", "Bytes"), ("pps", "Pkt/s"), ("bps", "Bit/s"))
MAX_ROWS = 200


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.2M' (SI prefixes), short enough for a table cell."""
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{prefix}{unit}" if prefix == "" else f"{n:.1f}{prefix}{unit}"
        n /= 1000
    return f"{n:.1f}P{unit}"


def _vni(s: FlowStat) -> str:
    if s.vni is None:
        return "-"
    return f"{s.vni} {s.network}" if s.network else str(s.vni)


def _side(addr: str, name: str | None) -> str:
    return f"{name.split('@', 1)[0]} {addr}" if name else addr


def summary_lines(stats: list[FlowStat], top: int = 3) -> str:
    """Per-VNI totals and the top talkers (inner sources by bytes), two lines of text."""
    per_vni: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    talkers: dict[str, int] = defaultdict(int)
    for s in stats:
        t = per_vni[_vni(s)]
        t[0] += s.packets
        t[1] += s.bytes
        t[2] += s.bps
        talkers[(s.src_name or s.inner_src).split('@', 1)[0]] += s.bytes
    vnis = "  ".join(f"{k}: {human(p)} pkts {human(b, 'B')} {human(r, 'bit/s')}" for k, (p, b, r) in
                     sorted(per_vni.items(), key=lambda kv: -kv[1][1]))
    best = sorted(talkers.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    tops = "  ".join(f"{i}. {name} {human(b, 'B')}" for i, (name, b) in enumerate(best, 1))
    return f"per VNI  {vnis or '-'}\ntop talkers  {tops or '-'}"


class FlowsView(Vertical):
    """A summary (per-VNI totals, top talkers) above the per-flow table, most bytes first."""

    DEFAULT_CSS = """
    FlowsView { height: 1fr; }
    FlowsView > .flows-summary { height: 2; color: $text-muted; }
    FlowsView > DataTable { height: 1fr; }
    """

    class FlowChosen(Message):
        """Enter on a flow: the pane filters the frame list to it."""

        def __init__(self, stat: FlowStat) -> None:
            super().__init__()
            self.stat = stat  #: the flow chosen

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stats: list[FlowStat] = []

    def compose(self) -> ComposeResult:
        yield Static("per VNI  -\ntop talkers  -", classes="flows-summary")
        yield DataTable(id="capture-flows-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)

    def show(self, stats: list[FlowStat]) -> None:
        """Replace the rows with ``stats`` (already ordered, most bytes first)."""
        table = self.query_one(DataTable)
        rows = self._stats = stats[:MAX_ROWS]
        with self.app.batch_update():
            self.query_one(".flows-summary", Static).update(Text(summary_lines(stats)))
            cursor = table.cursor_row
            table.clear()
            for s in rows:
                table.add_row(Text(_vni(s)), Text(_side(s.inner_src, s.src_name)), Text(_side(s.inner_dst, s.dst_name)),
                              Text(s.proto),
                              Text(str(s.packets), justify="right"), Text(human(s.bytes, "B"), justify="right"),
                              Text(f"{s.pps:.1f}", justify="right"), Text(human(s.bps), justify="right"))
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)

    @property
    def row_count(self) -> int:
        return self.query_one(DataTable).row_count

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self._stats):
            self.post_message(self.FlowChosen(self._stats[event.cursor_row]))


def flow_filter(s: FlowStat) -> str:
    """The capture filter that shows exactly the frames of flow ``s``."""
    terms = [] if s.vni is None else [f"vni={s.vni}"]
    terms += [f"src={s.inner_src}"] if s.inner_src else []
    terms += [f"dst={s.inner_dst}"] if s.inner_dst else []
    return " ".join(terms + [f"proto={s.proto.lower()}"])
