"""The nodes pane: reachability and latency, hostname, kernel, Docker version and store mode, etcd state."""
from __future__ import annotations

import asyncio

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.message import Message

from core.model import EtcdCluster, NodeStatus
from tui.console import console
from tui.messages import PaneFailed
from tui.panes.base import Pane, describe_error

DASH = Text("—", style="dim")
#: seconds the etcd read before asking about a node's removal may take (the removal itself checks again)
PREVIEW_SECONDS = 6.0


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


def waiting_cells(name: str) -> tuple[object, ...]:
    """The row of a node that has not answered yet."""
    return (Text(name, style="bold"), Text("… asking", style="dim"), *([DASH] * 6))


def joining_note(known: list[NodeStatus]) -> str:
    """Nodes whose dockerd is not on the cluster store yet (a node just added to the inventory): the runbook's
    next apply makes them members or store clients."""
    classic = "etcd (classic)"
    outside = [n.name for n in known if n.reachable and n.store_mode is not None and n.store_mode != classic]
    if not outside:
        return ""
    if not any(n.store_mode == classic for n in known):
        return " · no node uses the cluster store yet: apply the runbook (b)"
    return f" · {', '.join(outside)} not in the cluster yet: joins with the next runbook apply (b)"


def with_node(name: str, error: str | None) -> str:
    """``NAME: error``, without doubling the name when the error already starts with it."""
    text = error or "unreachable"
    return text if text.startswith(name + ":") else f"{name}: {text}"


class NodeAnswered(Message):
    """One node's status arrived (``ask``: the asking it answers)."""

    def __init__(self, status: NodeStatus, ask: int) -> None:
        super().__init__()
        self.status = status  #: the node's status (down with why when it did not answer in time)
        self.ask = ask        #: which asking of the pane it answers


class NodesAsked(Message):
    """An asking ended: its nodes that did not answer are no longer being asked."""

    def __init__(self, names: list[str], ask: int) -> None:
        super().__init__()
        self.names = names  #: the nodes that asking was for
        self.ask = ask      #: which asking


class RemovalAsked(Message):
    """What removing ``node`` would do to etcd, read before asking (``cluster``, or ``error`` if unread)."""

    def __init__(self, node: str, cluster: EtcdCluster | None, error: str | None) -> None:
        super().__init__()
        self.node = node        #: the node to remove
        self.cluster = cluster  #: the etcd cluster as it is now
        self.error = error      #: why it could not be read


class NodesPane(Pane):
    """Every inventory node's status, each row updated as its node answers; follow a node's logs, run a
    command on it, or take it out of the cluster.

    Each node is asked on its own (one asking in flight per node): a node that hangs keeps its row as it
    was while the others refresh on their period, and a node still being asked when the next refresh comes
    is shown down (so a node that stops answering is down no later than two refreshes after it stopped,
    whatever the service's own timeout)."""

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
        Binding("D", "remove_node", "Remove node (asks first)", show=False, id="nodes.remove"),
    ]

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id)
        self.statuses: dict[str, NodeStatus] = {}  #: last status per node name
        self.asking: dict[str, tuple[int, int]] = {}  #: node -> (asking id, refresh tick it was asked at)
        self.ticks = 0                              #: refresh periods since the pane was mounted
        self.removed: set[str] = set()              #: nodes taken out of the cluster from this console
        self._asks = 0

    def names(self) -> list[str]:
        """The nodes the pane shows, in inventory order."""
        return [n.name for n in console(self).service.inventory.nodes if n.name not in self.removed]

    # --- refresh: one asking in flight per node ----------------------------------------------
    def fetch(self, *, timed: bool = False) -> None:  # type: ignore[override]  # per node, not one worker
        """Ask every node that is not being asked already; each row updates as its node answers.

        ``timed``: the refresh timer asks (a node asked between two ticks, by `r`, is given a whole period
        before the pane calls it down)."""
        names = [n for n in self.names() if n not in self.asking]
        if not names:
            return
        self._asks += 1
        for n in names:
            self.asking[n] = (self._asks, self.ticks if timed else self.ticks + 1)
        self.run_worker(self._ask(names, self._asks), group="node-status", exit_on_error=False)

    async def _ask(self, names: list[str], ask: int) -> None:
        try:
            async for status in console(self).service.node_statuses(names):
                self.post_message(NodeAnswered(status, ask))
        except Exception as e:  # noqa: BLE001 - every failure is shown in the pane
            self.post_message(PaneFailed(self.id or "", describe_error(e)))
        finally:
            self.post_message(NodesAsked(names, ask))

    def _tick(self) -> None:
        """The timer's refresh: nodes still being asked since an earlier refresh are shown down; the others
        are asked again."""
        self.ticks += 1
        for name, (_, tick) in self.asking.items():
            silent = self.ticks - tick
            if silent >= 1 and name not in self.removed:
                address = self.statuses[name].address if name in self.statuses else ""
                self.statuses[name] = NodeStatus(name=name, address=address, reachable=False,
                                                 error=f"{name}: no answer for {silent * self.REFRESH_SECONDS:g} s "
                                                       "(asked at an earlier refresh, still waiting)")
        self._show()
        self.fetch(timed=True)

    def on_node_answered(self, msg: NodeAnswered) -> None:
        msg.stop()
        name = msg.status.name
        if self.asking.get(name, (None,))[0] == msg.ask:
            del self.asking[name]
        if name in self.removed:
            return
        self.statuses[name] = msg.status
        self._show()

    def on_nodes_asked(self, msg: NodesAsked) -> None:
        msg.stop()
        for name in msg.names:
            if self.asking.get(name, (None,))[0] == msg.ask:
                del self.asking[name]

    def _show(self) -> None:
        names = self.names()
        known = [self.statuses[n] for n in names if n in self.statuses]
        if not known:
            return                                   # "loading…" until the first node answers
        up = sum(n.reachable for n in known)
        summary = f"{up}/{len(names)} reachable"
        if len(known) < len(names):
            summary += f" · {len(names) - len(known)} not answered yet"
        summary += joining_note(known)
        self.show_rows([(n, node_cells(self.statuses[n]) if n in self.statuses else waiting_cells(n))
                        for n in names], summary)
        down = [with_node(n.name, n.error) for n in known if not n.reachable or n.docker_version is None]
        if down:
            self.border_subtitle = Text(summary + " · " + "; ".join(down), style="yellow")

    def _mark_filled(self) -> None:
        """Filled once every node has answered (or the pane shows an error): the first full paint."""
        if self._last_error is not None or all(n in self.statuses for n in self.names()):
            super()._mark_filled()

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

    # --- node remove ------------------------------------------------------------------------
    def action_remove_node(self) -> None:
        """Ask first (saying what will happen, or why it would be refused), then remove the selected node."""
        if not console(self).writable("removing a node"):
            return
        if (node := self._node()) is not None:
            self._before_removal(node)

    @work(group="node-remove-ask", exclusive=True, exit_on_error=False)
    async def _before_removal(self, node: str) -> None:
        try:
            cluster = await asyncio.wait_for(console(self).service.etcd_cluster(), PREVIEW_SECONDS)
        except TimeoutError:
            self.post_message(RemovalAsked(node, None, f"no answer within {PREVIEW_SECONDS:g} s"))
            return
        except Exception as e:  # noqa: BLE001 - the question says etcd is unread; the removal checks again
            self.post_message(RemovalAsked(node, None, describe_error(e)))
            return
        self.post_message(RemovalAsked(node, cluster, None))

    def on_removal_asked(self, msg: RemovalAsked) -> None:
        from core.etcd.health import removal_refusal
        from tui.modals.confirm import ConfirmModal
        from tui.screens.node_removal import removal_question

        msg.stop()
        refusal = removal_refusal(msg.node, msg.cluster.members) if msg.cluster else None
        if refusal:
            self.app.notify(f"{msg.node} not removed: {refusal}; nothing was changed", title="node remove",
                            severity="error", timeout=10, markup=False)
            return
        question = removal_question(msg.node, console(self).service.inventory.path, msg.cluster, msg.error)
        self.app.push_screen(ConfirmModal(question, confirm="Remove"),
                             lambda ok: self._remove_if_confirmed(msg.node, ok))

    def _remove_if_confirmed(self, node: str, ok: bool | None) -> None:
        from tui.screens.node_removal import NodeRemovalScreen

        if ok:
            self.app.push_screen(NodeRemovalScreen(node), lambda removed: self._forget(node, removed))

    def _forget(self, node: str, removed: bool | None) -> None:
        """A removed node leaves the pane (the live service keeps the inventory it was opened with)."""
        if removed:
            self.removed.add(node)
            self.statuses.pop(node, None)
            self.asking.pop(node, None)
            self._show()
