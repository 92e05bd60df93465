"""The networks pane: each network against each node, driver, scope, subnet, VNI and containers.

Actions: create an overlay network (validated form), delete one (asks first), run the ping matrix.
"""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.binding import Binding

from core.model import NetworkInfo
from tui.console import console
from tui.messages import NetworksLoaded, Notice, PaneFailed
from tui.panes.base import Pane, describe_error

DASH = Text("—", style="dim")


def visibility(net: NetworkInfo, nodes: list[str]) -> Text:
    """One mark per inventory node, in inventory order: its number where the network is visible, · where not."""
    t = Text()
    for i, n in enumerate(nodes, 1):
        t.append(str(i % 10) if n in net.nodes else "·", style="bold green" if n in net.nodes else "red")
    return t


def network_cells(net: NetworkInfo, nodes: list[str], unknown: str | None = None) -> tuple[object, ...]:
    """One table row for a network (``unknown``: it was listed before and cannot be listed now, and why)."""
    if unknown is not None:
        return (Text(net.name, style="bold"), Text(str(net.vni), justify="right") if net.vni is not None else DASH,
                Text("?" * len(nodes), style="red"), Text(net.subnet) if net.subnet else DASH,
                Text("unknown", style="bold red"), Text(net.driver), Text(unknown, style="red"))
    names = ", ".join(c.name for c in net.containers)
    return (Text(net.name, style="bold"), Text(str(net.vni), justify="right") if net.vni is not None else DASH,
            visibility(net, nodes), Text(net.subnet) if net.subnet else DASH,
            Text(net.scope, style="cyan" if net.scope == "global" else "dim"), Text(net.driver),
            Text(f"{len(net.containers)}" + (f" {names}" if names else "")))


def is_multi_host(net: NetworkInfo) -> bool:
    return net.scope in ("global", "swarm") or net.driver == "overlay"


class NetworksPane(Pane):
    """Networks across the cluster; local ones (bridge, host, none) are hidden until `a`."""

    PANE_TITLE = "Networks"
    # most telling first: on a narrow terminal the last columns are the ones scrolled off
    COLUMNS = (("name", "Network"), ("vni", "VNI"), ("nodes", "On nodes"), ("subnet", "Subnet"), ("scope", "Scope"),
               ("driver", "Driver"), ("containers", "Containers"))
    REFRESH_SECONDS = 5.0
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="networks.refresh"),
        Binding("c", "create", "Create", id="networks.create"),
        Binding("delete,D", "delete", "Delete", id="networks.delete"),
        Binding("p", "ping", "Ping matrix", id="networks.ping"),
        Binding("a", "toggle_local", "Local nets", id="networks.toggle-local"),
        Binding("enter", "detail", "Detail", show=False, id="networks.detail"),
    ]

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id)
        self.networks: list[NetworkInfo] = []  #: last networks loaded (all scopes)
        self.show_local = False                 #: also list node-local networks
        self.unknown: dict[str, str] = {}       #: network id -> why it cannot be listed now (shown, not dropped)
        self.problems: dict[str, str] = {}      #: node (or "vni") -> why its networks are missing

    async def load(self) -> NetworksLoaded:
        listing = await console(self).service.network_listing()
        return NetworksLoaded(listing.networks, listing.problems)

    def on_networks_loaded(self, msg: NetworksLoaded) -> None:
        msg.stop()
        seen = {n.id for n in msg.networks}
        why = next(iter(msg.problems.values()), "") if msg.problems else ""
        vanished = [n for n in self.networks if is_multi_host(n) and n.id not in seen] if why else []
        self.unknown = {n.id: why.split(";")[0] for n in vanished}
        self.networks, self.problems = msg.networks + vanished, msg.problems
        self._show()

    def on_pane_failed(self, msg: PaneFailed) -> None:
        """Nothing could be listed: the multi-host networks seen last stay, marked unknown with the reason
        (Textual then runs :meth:`Pane.on_pane_failed`, which shows the error)."""
        self.unknown = {n.id: msg.error.split(";")[0] for n in self.networks if is_multi_host(n)}
        if self.unknown:
            self._show()

    def _show(self) -> None:
        nodes = [n.name for n in console(self).service.inventory.nodes]
        nets = sorted(self.networks, key=lambda n: (not is_multi_host(n), n.name, n.nodes))
        shown = [n for n in nets if self.show_local or is_multi_host(n)]
        overlay = sum(is_multi_host(n) for n in nets)
        hidden = "" if self.show_local else f" · {len(nets) - overlay} local hidden (a)"
        problems = "".join(f" · ⚠ {where}: {why[:90]}" for where, why in self.problems.items())
        self.show_rows([(n.id, network_cells(n, nodes, self.unknown.get(n.id))) for n in shown],
                       f"{overlay} multi-host{hidden}{problems}")

    def selected_network(self) -> NetworkInfo | None:
        key = self.selected_key
        return next((n for n in self.networks if n.id == key), None)

    def action_detail(self) -> None:
        from tui.screens.network_detail import NetworkDetailScreen

        net = self.selected_network()
        if net is not None:
            self.app.push_screen(NetworkDetailScreen(net, [n.name for n in console(self).service.inventory.nodes]))

    def action_toggle_local(self) -> None:
        self.show_local = not self.show_local
        self._show()

    def action_ping(self) -> None:
        from tui.screens.ping_grid import PingGridScreen

        self.app.push_screen(PingGridScreen())

    def action_create(self) -> None:
        from tui.modals.network_form import NetworkForm

        if not console(self).writable("creating networks"):
            return
        nodes = [n.name for n in console(self).service.inventory.nodes]
        self.app.push_screen(NetworkForm(self.networks, nodes), self._create_submitted)

    def _create_submitted(self, request) -> None:
        if request is not None:
            self.notify(f"creating network {request.name}…", title="Networks", markup=False)
            self.create_network(request)

    @work(group="mutate", exit_on_error=False)
    async def create_network(self, request) -> None:
        try:
            res = await console(self).service.create_network(request.name, subnet=request.subnet,
                                                        attachable=request.attachable, node=request.node)
        except Exception as e:  # noqa: BLE001 - shown to the operator
            self.post_message(Notice(f"creating {request.name} failed: {describe_error(e)}", "error", "Networks"))
            return
        seen = sum(res.nodes.values())
        self.post_message(Notice(f"{res.network} created ({res.id[:12]}): visible on {seen}/{len(res.nodes)} "
                                           f"nodes after {res.seconds:.2f} s", "information", "Networks"))
        self.fetch()

    def action_delete(self) -> None:
        from tui.modals.confirm import ConfirmModal

        if not console(self).writable("deleting networks"):
            return
        net = self.selected_network()
        if net is None:
            self.notify("no network selected", severity="warning")
            return
        question = (f"Delete network [b]{escape(net.name)}[/b] ({net.id[:12]}, {net.driver}, {net.scope})?\n"
                    f"Docker removes it from every node; containers attached: {len(net.containers)}.")
        def delete(ok: bool | None) -> None:
            if ok:
                self.delete_network(net.name)
        self.app.push_screen(ConfirmModal(question, confirm="Delete"), delete)

    @work(group="mutate", exit_on_error=False)
    async def delete_network(self, name: str) -> None:
        try:
            await console(self).service.delete_network(name)
        except Exception as e:  # noqa: BLE001 - shown to the operator
            self.post_message(Notice(f"deleting {name} failed: {describe_error(e)}", "error", "Networks"))
            return
        self.post_message(Notice(f"network {name} deleted", "information", "Networks"))
        self.fetch()
