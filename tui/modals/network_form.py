"""The create-network form: name, subnet, attachable and the node to create it on.

Nothing is sent until :func:`core.dockerd.validation.validate` passes (the rules the CLI and the
services apply too); problems show in the form.
"""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from core.dockerd.validation import NetworkRequest, validate
from core.model import NetworkInfo


class NetworkForm(ModalScreen[NetworkRequest | None]):
    """Dismisses with a valid :class:`NetworkRequest`, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel")]

    def __init__(self, existing: list[NetworkInfo], nodes: list[str]) -> None:
        super().__init__(classes="modal")
        self.existing = existing  #: networks already there (names and subnets must not clash)
        self.nodes = nodes        #: where it may be created

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="network-form"):
            yield Static("[b]Create an overlay network[/b]", classes="dialog-title")
            yield Label("Name")
            yield Input(placeholder="e.g. demo2", id="name")
            yield Label("Subnet (CIDR, optional: Docker chooses when empty)")
            yield Input(placeholder="e.g. 198.19.5.0/24", id="subnet")
            with Horizontal(classes="form-row"):
                yield Checkbox("attachable", value=True, id="attachable")
                yield Select([(n, n) for n in self.nodes], value=self.nodes[0], allow_blank=False, id="node",
                             prompt="node") if self.nodes else Static("")
            yield Static("", id="form-errors", markup=False)   # quotes what was typed: never markup
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def submit(self) -> None:
        node = self.query_one("#node", Select).value if self.nodes else None
        request, errors = validate(self.query_one("#name", Input).value, self.query_one("#subnet", Input).value,
                                   self.existing, self.query_one("#attachable", Checkbox).value,
                                   node if isinstance(node, str) else None)
        box = self.query_one("#form-errors", Static)
        if errors:
            box.update("\n".join(f"✗ {e}" for e in errors))
            box.add_class("-shown")
            return
        self.dismiss(request)
