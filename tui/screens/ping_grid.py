"""The probe ping matrix as a grid: a row per source node, a column per target, loss and RTT by name and address."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from core.model import LinksSnapshot, LinkStat, PingResult
from tui.console import console
from tui.panes.base import describe_error

LINKS_SECONDS = 6.0             # u: how long links watches while the matrix runs


class PingLoaded(Message):
    """The matrix arrived (``results``) or failed (``error``)."""

    def __init__(self, results: list[PingResult] | None, error: str | None = None,
                 links: LinksSnapshot | None = None) -> None:
        super().__init__()
        self.results = results  #: one result per (source, target, by)
        self.error = error      #: why the matrix could not be measured
        self.links = links      #: the same pings seen on the underlay (``u``), when asked


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


def wire_line(row: LinkStat) -> Text:
    """The same pair on the underlay: VXLAN frames lost between the nodes' captures, one-way delay."""
    if not row.sent:
        return Text("wire  no frames", style="dim")
    style = "green" if row.lost == 0 else "red"
    p50 = f"{row.delay_p50_ms:.3f} ms" if row.delay_p50_ms is not None else "—"
    return Text(f"wire {row.loss:>4.0%} {p50:>9} 1-way", style=style)


class PingGridScreen(ModalScreen[None]):
    """Runs :meth:`Service.ping_matrix` in a worker and shows it; `r` measures again."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="ping.close"),
                Binding("r", "measure", "Measure again", id="ping.measure"),
                Binding("u", "measure_links", "Measure with the underlay", id="ping.links")]

    with_links = False  #: also match the pings' VXLAN frames at both ends (core.service.Service.links)

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

    def action_measure_links(self) -> None:
        self.with_links = True
        self.action_measure()

    @work(exclusive=True, exit_on_error=False)
    async def measure(self) -> None:
        try:
            if self.with_links:
                results, links = await self._with_links()
                self.post_message(PingLoaded(results, links=links))
                return
            results = await console(self).service.ping_matrix()
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.post_message(PingLoaded(None, describe_error(e)))
            return
        self.post_message(PingLoaded(results))

    async def _with_links(self) -> tuple[list[PingResult], LinksSnapshot | None]:
        """The ping matrix while links watches every node: it starts once the capture runs."""
        service = console(self).service
        pings = None
        final = None
        stream = cast(AsyncGenerator[LinksSnapshot, None], service.links([], LINKS_SECONDS, interval=0.2))
        async with aclosing(stream) as snaps:
            async for snap in snaps:
                if pings is None:
                    pings = asyncio.ensure_future(service.ping_matrix())
                final = snap
        results = await (pings if pings is not None else service.ping_matrix())
        return results, final

    def on_ping_loaded(self, msg: PingLoaded) -> None:
        status = self.query_one("#ping-status", Static)
        if msg.results is None:
            status.update(Text(f"✗ {msg.error}", style="bold red"))
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
            if msg.links is not None:
                wire = {(r.src, r.dst): r for r in msg.links.pairs}
                for i, dst in enumerate(nodes):
                    if (src, dst) in wire:
                        cells[i].append("\n").append_text(wire_line(wire[(src, dst)]))
            table.add_row(Text(src, style="bold"), *cells, key=src, height=3 if msg.links is not None else 2)
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
