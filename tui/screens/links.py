"""The Links grid: a row per source node, a column per destination, from the same VXLAN frames seen
leaving one node and arriving at the other (:meth:`core.service.Service.links`).

Each cell: loss and one-way delay (p50/p99, clock offset removed) coloured by loss, and a sparkline of
the last minute (loss where there was any, else the least delay). A worker consumes the service's
snapshots (one a second, whatever the frame rate) and the grid redraws when one arrives, never per
packet. Enter on a cell closes the grid and filters the capture list to that pair's frames.
"""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from core.model import LinksSnapshot, LinkStat
from tui.console import console
from tui.panes.base import describe_error

BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20                 # the minute in 3-second columns


class LinksUpdated(Message):
    """A snapshot arrived (``snapshot``), or the measurement failed (``error``)."""

    def __init__(self, snapshot: LinksSnapshot | None, error: str | None = None) -> None:
        super().__init__()
        self.snapshot = snapshot  #: every ordered pair, all VNIs together
        self.error = error        #: why links could not be measured

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LinksUpdated) and message.error is None and self.error is None


def loss_style(row: LinkStat) -> str:
    if not row.sent:
        return "dim"
    if row.lost == 0:
        return "green"
    return "yellow" if row.loss < 0.01 else "bold red"


def sparkline(values: list[float | None], width: int = SPARK_WIDTH, top: float | None = None) -> str:
    """``values`` squeezed to ``width`` columns (the worst of each group), scaled to ``top`` (default: their
    max); a column with no value is a space."""
    if not values:
        return " " * width
    step = max(1, len(values) // width)
    cols = [values[i:i + step] for i in range(0, len(values), step)][-width:]
    worst = [max((v for v in c if v is not None), default=None) for c in cols]
    hi = top if top is not None else max((v for v in worst if v is not None), default=0.0)
    out = []
    for v in worst:
        if v is None:
            out.append(" ")
        else:
            out.append(BARS[min(len(BARS) - 1, int(v / hi * (len(BARS) - 1)))] if hi > 0 else BARS[0])
    return "".join(out)


def _ms(x: float | None) -> str:
    return "—" if x is None else (f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}")


def link_cell(row: LinkStat) -> Text:
    """Three lines: loss (and counts), delay p50/p99 (± uncertainty), the last minute's sparkline."""
    t = Text()
    style = loss_style(row)
    if not row.sent and not row.rx_only:
        t.append("no traffic", style="dim")
        return t
    t.append(f"loss {row.loss:6.2%}", style=style)
    t.append(f"  {row.received}/{row.sent}", style="dim")
    t.append("\n")
    unc = f" ±{_ms(row.uncertainty_ms)}" if row.uncertainty_ms is not None else " raw"
    t.append(f"{_ms(row.delay_p50_ms)}/{_ms(row.delay_p99_ms)} ms{unc}")
    t.append("\n")
    if any(v for v in row.loss_history if v):
        t.append(sparkline(row.loss_history, top=1.0), style="red")
    else:
        t.append(sparkline(row.delay_history_ms), style="cyan")
    return t


class LinksScreen(ModalScreen[str | None]):
    """Measures links on every node while open; dismisses with a capture filter (Enter) or None."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="links.close"),
                Binding("enter", "show_frames", "Show the pair's frames", id="links.frames"),
                Binding("t", "trace", "Trace between the pair's probes", id="links.trace")]

    def __init__(self, nodes: list[str] | None = None) -> None:
        super().__init__()
        self.nodes = nodes or []
        self.snapshot: LinksSnapshot | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="links-dialog"):
            yield Static("[b]Links[/b]: each VXLAN frame seen leaving its node and arriving at the other "
                         "(rows: from, columns: to) · loss, one-way delay p50/p99 ms, last minute",
                         classes="dialog-title")
            yield DataTable(id="links-table", cursor_type="cell", zebra_stripes=False)
            yield Static("", id="links-clock")
            yield Static("starting the capture on every node…", id="links-status")

    def on_mount(self) -> None:
        self.measure()

    @work(exclusive=True, exit_on_error=False, group="links")
    async def measure(self) -> None:
        try:
            async for snap in console(self).service.links(self.nodes, None, interval=1.0):
                self.post_message(LinksUpdated(snap))
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.post_message(LinksUpdated(None, describe_error(e)))

    def on_links_updated(self, msg: LinksUpdated) -> None:
        status = self.query_one("#links-status", Static)
        if msg.snapshot is None:
            status.update(Text(f"✗ {msg.error}", style="bold red"))
            return
        self.snapshot = snap = msg.snapshot
        table = self.query_one(DataTable)
        where = table.cursor_coordinate
        table.clear(columns=True)
        table.add_column("from \\ to", key="src")
        for n in snap.nodes:
            table.add_column(n, key=n)
        rows = {(r.src, r.dst): r for r in snap.pairs}
        for src in snap.nodes:
            cells = [link_cell(rows[(src, dst)]) if (src, dst) in rows else Text("—", style="dim")
                     for dst in snap.nodes]
            table.add_row(Text(src, style="bold"), *cells, key=src, height=3)
        if where.row < len(snap.nodes) and where.column <= len(snap.nodes):
            table.cursor_coordinate = where
        self.query_one("#links-clock", Static).update(
            Text("\n".join(snap.clock_notes), style="yellow") if snap.clock_notes
            else Text("clocks agree within the measurement's uncertainty", style="dim"))
        state = "final" if snap.final else "live"
        extra = [n for n in snap.notices][-1:]
        status.update(Text(f"{state} · {snap.frames:,} sightings over {snap.span:.1f} s · {snap.pending:,} pending"
                           + (f" · {snap.evicted:,} evicted" if snap.evicted else "")
                           + (f" · {extra[0]}" if extra else "") + " · Enter: that pair's frames · t: trace"))

    def selected_pair(self) -> tuple[str, str] | None:
        snap = self.snapshot
        if snap is None:
            return None
        c = self.query_one(DataTable).cursor_coordinate
        if not 0 <= c.row < len(snap.nodes) or not 1 <= c.column <= len(snap.nodes):
            return None
        src, dst = snap.nodes[c.row], snap.nodes[c.column - 1]
        return None if src == dst else (src, dst)

    def action_show_frames(self) -> None:
        pair = self.selected_pair()
        if pair is None:
            self.app.notify("choose a cell of two different nodes", severity="warning")
            return
        self.dismiss(f"src={pair[0]} dst={pair[1]}")

    def action_trace(self) -> None:
        """Trace from the source node's probe container to the destination node's (the runbook's
        ``probe-<node>``; core.dockerd.probes names them so, but imports the Docker SDK: not here)."""
        from tui.screens.trace import TraceScreen

        pair = self.selected_pair()
        if pair is None:
            self.app.notify("choose a cell of two different nodes", severity="warning")
            return
        self.app.push_screen(TraceScreen(f"probe-{pair[0]}", f"probe-{pair[1]}"))

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        self.action_show_frames()

    def action_close(self) -> None:
        self.dismiss(None)
