"""The nodes pane: reachability and latency, hostname, kernel, Docker version and store mode, etcd state."""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding

from core.model import NodeStatus
from tui.console import console
from tui.messages import NodesLoaded
from tui.panes.base import Pane

DASH = Text("—", style="dim")


def _cell(value: str | None, good: str | None = None) -> Text:
    if value is None:
        return DASH
    return Text(value, style="green" if good is not None and value == good else "")


def node_cells(n: NodeStatus) -> tuple[object, ...]:
    """One table row for a node."""
    docker = _cell(n.docker_version)
    if n.reachable:
        state = Text("● up", style="bold green")
        latency = Text(f"{n.latency_ms:.1f} ms" if n.latency_ms is not None else "?", justify="right")
        if n.docker_version is None and n.error:      # SSH answers, dockerd does not: say so in its row
            state, docker = Text("▲ degraded", style="bold yellow"), Text("✗ down", style="bold red")
    else:
        # the reason is in the pane's subtitle and the node's detail; a narrow column would cut it mid-word
        state, latency = Text("✗ down", style="bold red"), DASH
    etcd = _cell(n.etcd_state, good="running")
    if n.etcd_state in ("stopped", "not installed"):
        etcd = Text(n.etcd_state, style="yellow")
    if n.etcd_last_error:     # a stopped etcd: why, from the last fatal line of its log
        etcd = Text.assemble((f"{n.etcd_state}: ", "yellow"), (n.etcd_last_error[-60:], "red"))
    return (Text(n.name, style="bold"), state, latency, etcd, _cell(n.store_mode, good="etcd (classic)"),
            docker, _cell(n.hostname), _cell(n.kernel))


def with_node(name: str, error: str | None) -> str:
    """``NAME: error``, without doubling the name when the error already starts with it."""
    text = error or "unreachable"
    return text if text.startswith(name + ":") else f"{name}: {text}"


class NodesPane(Pane):
    """Every inventory node's status; follow a node's logs or run a command on it."""

    PANE_TITLE = "Nodes"
    # most telling first: on a narrow terminal the last columns are the ones scrolled off
    COLUMNS = (("node", "Node"), ("state", "State"), ("latency", "Latency"), ("etcd", "etcd"), ("store", "Store"),
               ("docker", "Docker"), ("hostname", "Hostname"), ("kernel", "Kernel"))
    REFRESH_SECONDS = 5.0
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="nodes.refresh"),
        Binding("e", "follow_log('etcd')", "etcd log", id="nodes.etcd-log"),
        Binding("d", "follow_log('dockerd')", "dockerd log", id="nodes.dockerd-log"),
        Binding("x", "run_command", "Run command", id="nodes.run-command"),
        Binding("enter", "detail", "Detail", show=False, id="nodes.detail"),
    ]

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id)
        self.statuses: dict[str, NodeStatus] = {}  #: last status per node name

    async def load(self) -> NodesLoaded:
        return NodesLoaded(await console(self).service.nodes())

    def on_nodes_loaded(self, msg: NodesLoaded) -> None:
        msg.stop()
        self.statuses = {n.name: n for n in msg.nodes}
        up = sum(n.reachable for n in msg.nodes)
        summary = f"{up}/{len(msg.nodes)} reachable"
        self.show_rows([(n.name, node_cells(n)) for n in msg.nodes], summary)
        down = [with_node(n.name, n.error) for n in msg.nodes if not n.reachable or n.docker_version is None]
        if down:
            self.border_subtitle = Text(summary + " · " + "; ".join(down), style="yellow")

    def action_detail(self) -> None:
        from tui.screens.detail import DetailScreen

        n = self.statuses.get(self.selected_key or "")
        if n is None:
            return
        spec = next((s for s in console(self).service.inventory.nodes if s.name == n.name), None)
        rows = [("reachable", node_cells(n)[1]), ("SSH round trip", f"{n.latency_ms} ms" if n.latency_ms else None),
                ("SSH target", spec.ssh_target if spec else n.address), ("underlay address", spec and spec.advertise),
                ("hostname", n.hostname), ("kernel", n.kernel), ("Docker", n.docker_version),
                ("cluster store", n.store_mode), ("etcd", n.etcd_state),
                ("error", Text(n.error, style="red") if n.error else None)]
        if n.etcd_last_error:
            rows.append(("etcd's last fatal log line", Text(n.etcd_last_error, style="red")))
        self.app.push_screen(DetailScreen(f"[b]{escape(n.name)}[/b]  node", rows))

    def _node(self) -> str | None:
        node = self.selected_key
        if node is None:
            self.app.notify("no node selected", severity="warning")
        return node

    def action_follow_log(self, source: str) -> None:
        from tui.screens.log import LogScreen

        if (node := self._node()) is not None:
            self.app.push_screen(LogScreen(node, source))

    def action_run_command(self) -> None:
        from tui.modals.command import CommandModal

        if not console(self).writable("running commands on nodes"):
            return
        if (node := self._node()) is not None:
            self.app.push_screen(CommandModal(node))
