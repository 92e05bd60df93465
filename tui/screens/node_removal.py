"""Taking a node out of the cluster from the console: what will happen (asked before, by the Nodes pane with
:func:`removal_question`), then the removal's progress and result lines. The screen stays until the removal
ends (stopping it half-way would leave the node half removed); the console keeps running on a refusal or an
error, which the screen shows."""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import RichLog, Static

from core.etcd.health import after_removal
from core.model import EtcdCluster
from tui.console import console
from tui.panes.base import describe_error


def etcd_line(name: str, cluster: EtcdCluster | None, error: str | None) -> str:
    """What the removal does to etcd, as the cluster looks now (markup)."""
    if cluster is None:
        return (f"• etcd could not be read now ({escape(error or 'no answer')}): the removal checks quorum "
                "itself and refuses, changing nothing, if removing a member would lose it")
    member = next((m for m in cluster.members if m.name == name), None)
    left = after_removal(name, cluster.members)
    if member is None or left is None:
        return f"• {escape(name)} holds no etcd member: etcd's quorum is not touched"
    return (f"• its etcd member {escape(member.id or '?')} is removed (member-remove), its etcd stopped and its "
            f"data dir moved aside; {left[0]} healthy of {left[1]} members remain: quorum kept")


def removal_question(name: str, inventory_path: str, cluster: EtcdCluster | None, error: str | None) -> str:
    """The confirmation's text (markup, every value escaped): what will happen, step by step."""
    n = escape(name)
    return "\n".join([
        f"Remove [b]{n}[/b] from the cluster?",
        "• its probe container is removed",
        etcd_line(name, cluster, error),
        "• cluster-store and cluster-advertise are taken out of its daemon.json and its [b]dockerd restarts[/b] "
        "(it leaves the store and the overlay's gossip)",
        f"• its \\[\\[node]] table is dropped from the inventory {escape(inventory_path)}",
        "A node that does not answer SSH is removed from etcd and the inventory only. To add a node: add it to the "
        "inventory and apply the runbook."])


class RemovalDone(Message):
    """The removal ended: ``lines`` (what was done) or ``error`` (why it was refused or failed)."""

    def __init__(self, lines: list[str] | None, error: str | None = None) -> None:
        super().__init__()
        self.lines = lines  #: one line per thing done
        self.error = error  #: the refusal or failure, as the operator reads it


class NodeRemovalScreen(ModalScreen[bool]):
    """Runs ``remove_node(name)`` and shows its lines; dismisses with True when the node was removed."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="node-removal.close")]

    def __init__(self, name: str) -> None:
        super().__init__(classes="modal")
        self.node_name = name     #: the node being removed
        self.running = True       #: the removal has not ended yet
        self.removed = False      #: it ended with the node removed

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="node-removal-dialog"):
            yield Static(f"[b]Removing {escape(self.node_name)}[/b] from the cluster", classes="dialog-title")
            yield RichLog(id="node-removal-log", wrap=True, markup=False, max_lines=500)
            yield Static("", id="node-removal-status")

    def on_mount(self) -> None:
        self.query_one(RichLog).write(Text(f"removing {self.node_name}: probe, etcd member, store config, inventory entry "
                                           "(its dockerd restarts: this can take a minute)…", style="cyan"))
        self.query_one("#node-removal-status", Static).update(Text("running… (Esc waits for it to end)", style="dim"))
        self.run_removal()

    @work(group="node-remove", exclusive=True, exit_on_error=False)
    async def run_removal(self) -> None:
        try:
            lines = await console(self).service.remove_node(self.node_name)
        except Exception as e:  # noqa: BLE001 - shown in the screen; the console keeps running
            self.post_message(RemovalDone(None, describe_error(e)))
            return
        self.post_message(RemovalDone(lines))

    def on_removal_done(self, msg: RemovalDone) -> None:
        self.running = False
        log = self.query_one(RichLog)
        status = self.query_one("#node-removal-status", Static)
        if msg.lines is None:
            log.write(Text(f"✗ {self.node_name} not removed: {msg.error}", style="bold red"))
            status.update(Text("refused or failed: see above · Esc: back", style="bold red"))
            return
        self.removed = True
        for line in msg.lines:
            log.write(Text(f"✓ {line}"))
        log.write(Text(f"{self.node_name} removed. This console still holds the inventory it was opened with, so its "
                       "runbook is refused: restart the console to load the file without the node (then `runbook apply` "
                       "adds an etcd member elsewhere if the sizing wants one)", style="bold green"))
        status.update(Text("done · Esc: back", style="green"))
        console(self).refresh_panes()

    def action_close(self) -> None:
        if self.running:
            self.app.notify(f"the removal of {self.node_name} is still running: it ends on its own (stopping it "
                            "half-way would leave the node half removed)", severity="warning", markup=False)
            return
        self.dismiss(self.removed)
