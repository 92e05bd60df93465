"""Choose the nodes to capture on before a capture starts (every node is ticked at first)."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, SelectionList, Static


class CaptureNodesModal(ModalScreen[list[str] | None]):
    """A selection list of the inventory's nodes; Start dismisses with the ticked ones."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="capture-nodes.cancel"),
                Binding("ctrl+s", "start", "Start", id="capture-nodes.start")]
    DEFAULT_CSS = """
    CaptureNodesModal { align: center middle; }
    CaptureNodesModal > Vertical { width: 60; height: auto; max-height: 80%; border: thick $accent;
                                   background: $surface; padding: 0 1; }
    CaptureNodesModal SelectionList { height: auto; max-height: 12; }
    CaptureNodesModal .capture-nodes-error { color: $error; height: auto; }
    CaptureNodesModal Horizontal { height: auto; align-horizontal: right; }
    """

    def __init__(self, nodes: list[str], chosen: list[str] | None = None, warning: str = "") -> None:
        super().__init__()
        self.nodes = nodes                        #: every node of the inventory
        self.chosen = set(chosen or nodes)        #: ticked when the modal opens
        self.warning = warning                    #: e.g. that the last capture's frames will be discarded

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Capture VXLAN frames on (space ticks, Enter on Start):")
            yield SelectionList[str](*[(Text(n), n, n in self.chosen) for n in self.nodes], id="capture-nodes-list")
            yield Static(self.warning, classes="capture-nodes-error", markup=False)
            with Horizontal():
                yield Button("Cancel", id="capture-nodes-cancel")
                yield Button("Start", id="capture-nodes-start", variant="primary")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_start(self) -> None:
        picked = [n for n in self.nodes if n in self.query_one(SelectionList).selected]
        if not picked:
            self.query_one(".capture-nodes-error", Static).update("tick at least one node to capture on")
            return
        self.dismiss(picked)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "capture-nodes-start":
            self.action_start()
        else:
            self.action_cancel()
