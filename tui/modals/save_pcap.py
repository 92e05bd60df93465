"""Ask where to save the captured frames as a pcap; never clobbers a file without asking.

The path is checked before anything is written (its directory exists and is writable, it is not
a directory); an existing file needs a yes in a confirmation first. Dismisses with the path.
"""
from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.modals.confirm import ConfirmModal


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a new pcap, or None when it can (it may exist: ask first)."""
    if not path.strip():
        return "type a file name, e.g. capture.pcap"
    p = Path(path).expanduser()
    if p.is_dir():
        return f"{p} is a directory: add a file name"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"cannot write {p}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        return f"cannot write {p}: permission denied"
    return None


class SavePcapModal(ModalScreen[str | None]):
    """The path of the pcap to write (``what`` says which frames), or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="save-pcap.cancel")]
    DEFAULT_CSS = """
    SavePcapModal { align: center middle; }
    SavePcapModal > Vertical { width: 80; height: auto; border: thick $accent; background: $surface; padding: 0 1; }
    SavePcapModal .save-pcap-error { color: $error; height: auto; }
    SavePcapModal Horizontal { height: auto; align-horizontal: right; }
    """

    def __init__(self, what: str, default: str = "capture.pcap") -> None:
        super().__init__()
        self.what = what          #: e.g. "357 frames (filter: proto=icmp)"
        self.default = default    #: the path offered

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Save {self.what} to a pcap file:", markup=False)
            yield Input(self.default, id="save-pcap-path")
            yield Static("", classes="save-pcap-error")
            with Horizontal():
                yield Button("Cancel", id="save-pcap-cancel")
                yield Button("Save", id="save-pcap-save", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one(".save-pcap-error", Static).update(text)

    @on(Input.Submitted)
    @on(Button.Pressed, "#save-pcap-save")
    def _submit(self) -> None:
        path = self.query_one(Input).value.strip()
        problem = path_problem(path)
        if problem:
            self._error(problem)
            return
        full = str(Path(path).expanduser())
        if not Path(full).exists():
            self.dismiss(full)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss(full)
            else:
                self._error(f"{full} exists and was left as it is: choose another name")

        self.app.push_screen(ConfirmModal(f"{escape(full)} exists. Overwrite it?", confirm="Overwrite"), answered)

    @on(Button.Pressed, "#save-pcap-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
