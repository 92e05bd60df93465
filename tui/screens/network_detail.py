"""One network in full: where it is visible, its VNI and subnet, and every container with its address."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from core.model import NetworkInfo


def network_table(net: NetworkInfo, nodes: list[str]) -> Table:
    """A row per inventory node: visible or not, and the containers it runs on the network."""
    t = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    for col in ("Node", "Visible", "Container", "Address", "MAC"):
        t.add_column(col)
    for node in nodes:
        seen = Text("● yes", style="green") if node in net.nodes else Text("✗ no", style="bold red")
        here = [c for c in net.containers if c.node == node]
        if not here:
            t.add_row(Text(node, style="bold"), seen, Text("—", style="dim"), "", "")
        for i, c in enumerate(here):
            t.add_row(Text(node, style="bold") if i == 0 else "", seen if i == 0 else "", Text(c.name),
                      Text(c.ip or "—"), Text(c.mac or "—"))
    return t


class NetworkDetailScreen(ModalScreen[None]):
    """Opened with Enter on a network row."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="network-detail.close")]

    def __init__(self, net: NetworkInfo, nodes: list[str]) -> None:
        super().__init__()
        self.net, self.nodes = net, nodes

    def compose(self) -> ComposeResult:
        n = self.net
        head = (f"[b]{escape(n.name)}[/b]  {escape(n.driver)} · scope {escape(n.scope)} · "
                f"subnet {escape(n.subnet or '—')} · "
                f"VNI {n.vni if n.vni is not None else '— (none yet: Docker allocates it when a container joins)'}"
                f" · {'attachable' if n.attachable else 'not attachable'}\n[dim]{escape(n.id)}[/dim]")
        with Vertical(classes="dialog", id="network-detail"):
            yield Static(head, classes="dialog-title")
            with VerticalScroll():
                yield Static(network_table(n, self.nodes))

    def action_close(self) -> None:
        self.dismiss(None)
