"""The probe ping matrix as a grid: a row per source node, a column per target, loss and RTT by name and address."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from core.model import PingResult
from tui.console import console
from tui.panes.base import describe_error


class PingLoaded(Message):
    """The matrix arrived (``results``) or failed (``error``)."""

    def __init__(self, results: list[PingResult] | None, error: str | None = None) -> None:
        super().__init__()
        self.results = results  #: one result per (source, target, by)
        self.error = error      #: why the matrix could not be measured


def ping_cell(results: list[PingResult]) -> Text:
    """Loss and average RTT by name, then by address, coloured by loss."""
    t = Text()
    for r in sorted(results, key=lambda r: r.by != "name"):
        if t:
            t.append("\n")
        label = "name" if r.by == "name" else "addr"
        if r.error:
            t.append(f"{label} ✗ {r.error}", style="bold red")
            continue
        style = "green" if r.loss == 0 else ("red" if r.loss == 1 else "yellow")
        rtt = f"{r.rtt_ms:.2f} ms" if r.rtt_ms is not None else "—"
        t.append(f"{label} {r.loss:>4.0%} {rtt:>9}", style=style)
    return t


class PingGridScreen(ModalScreen[None]):
    """Runs :meth:`Service.ping_matrix` in a worker and shows it; `r` measures again."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="ping.close"),
                Binding("r", "measure", "Measure again", id="ping.measure")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="ping-dialog"):
            yield Static("[b]Ping matrix[/b]: each probe pings every other, by container name and by address",
                         classes="dialog-title")
            yield DataTable(id="ping-table", cursor_type="none", zebra_stripes=False)
            yield Static("measuring…", id="ping-status")

    def on_mount(self) -> None:
        self.measure()

    def action_measure(self) -> None:
        self.query_one("#ping-status", Static).update("measuring…")
        self.measure()

    @work(exclusive=True, exit_on_error=False)
    async def measure(self) -> None:
        try:
            results = await console(self).service.ping_matrix()
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.post_message(PingLoaded(None, describe_error(e)))
            return
        self.post_message(PingLoaded(results))

    def on_ping_loaded(self, msg: PingLoaded) -> None:
        status = self.query_one("#ping-status", Static)
        if msg.results is None:
            status.update(f"[bold red]✗ {msg.error}[/]")
            return
        nodes = [n.name for n in console(self).service.inventory.nodes]
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column("from \\ to", key="src")
        for n in nodes:
            table.add_column(n, key=n)
        for src in nodes:
            cells = [ping_cell([r for r in msg.results if r.src == src and r.dst == dst]) if src != dst
                     else Text("—", style="dim") for dst in nodes]
            table.add_row(Text(src, style="bold"), *cells, key=src, height=2)
        sent = sum(r.sent for r in msg.results)
        got = sum(r.received for r in msg.results)
        bad = sum(1 for r in msg.results if r.error or r.loss > 0)
        if not msg.results:
            status.update("[yellow]no probes are running: apply the runbook (b, then a) to start them[/]")
        else:
            status.update(f"{len(msg.results)} measurements · {got}/{sent} replies · "
                          + ("[green]no loss[/]" if not bad else f"[red]{bad} with loss or errors[/]"))

    def action_close(self) -> None:
        self.dismiss(None)
