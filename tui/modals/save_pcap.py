"""Ask where to save the captured frames as a pcap; never clobbers a file without asking.

The service says what a name means (:meth:`core.service.Service.save_target`): in a local console the path is
the operator's choice; in a served console only a bare file name, saved in the session's own directory on the
serving host (the modal shows where and how to fetch it); a read-only console saves nothing (the pane says so
before opening this modal). Locally, the path is also checked here first (its directory exists and is
writable). An existing file needs a yes in a confirmation first. Dismisses with ``(name, replace)``.
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

from core.errors import OverlayError
from core.model import SaveTarget
from tui.console import console
from tui.modals.confirm import ConfirmModal

SaveChoice = tuple[str, bool]   # (the name typed, replace an existing file)


def path_problem(path: str) -> str | None:
    """Why local ``path`` cannot be written as a new pcap, or None when it can (it may exist: ask first)."""
    if not path.strip():
        return "type a file name, e.g. capture.pcap"
    p = Path(path).expanduser()
    if p.is_symlink():
        return f"{p} is a symbolic link: overlay-tui does not write through links"
    if p.is_dir():
        return f"{p} is a directory: add a file name"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"cannot write {p}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write {p}: permission denied"
    return None


class SavePcapModal(ModalScreen[SaveChoice | None]):
    """The name of the pcap to write (``what`` says which frames) and whether to replace, or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="save-pcap.cancel")]
    DEFAULT_CSS = """
    SavePcapModal { align: center middle; }
    SavePcapModal > Vertical { width: 80; height: auto; border: thick $accent; background: $surface; padding: 0 1; }
    SavePcapModal .save-pcap-error { color: $error; height: auto; }
    SavePcapModal .save-pcap-where { color: $text-muted; height: auto; }
    SavePcapModal Horizontal { height: auto; align-horizontal: right; }
    """

    def __init__(self, what: str, default: str = "capture.pcap", served_dir: str | None = None) -> None:
        """``served_dir``: the session's directory on the serving host (a served console), else None."""
        super().__init__()
        self.what = what              #: e.g. "357 frames (filter: proto=icmp)"
        self.default = default        #: the name offered
        self.served_dir = served_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Save {self.what} to a pcap file:", markup=False)
            yield Input(self.default, id="save-pcap-path")
            where = (f"Served console: a file name only; it is saved on the serving host in {self.served_dir}"
                     if self.served_dir else "")
            yield Static(where, classes="save-pcap-where", markup=False)
            yield Static("", classes="save-pcap-error", markup=False)
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
        name = self.query_one(Input).value.strip()
        try:
            target: SaveTarget = console(self).service.save_target(name)
        except OverlayError as e:
            self._error(str(e))
            return
        problem = None if target.served else path_problem(target.path)
        if problem:
            self._error(problem)
            return
        if not target.exists:
            self.dismiss((name, False))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss((name, True))
            else:
                self._error(f"{target.path} exists and was left as it is: choose another name")

        self.app.push_screen(ConfirmModal(f"{escape(target.path)} exists. Replace it?", confirm="Replace"), answered)

    @on(Button.Pressed, "#save-pcap-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
