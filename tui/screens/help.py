"""`?`: every key of the console, generated from the binding table (so it never goes stale)."""
from __future__ import annotations

from itertools import groupby

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.commands import KeyAction, key_table
from tui.console import console


def scope_table(scope: str, rows: list[KeyAction], read_only: bool) -> Table:
    """One scope's keys as a two-column table."""
    t = Table(title=Text(scope, style="bold"), title_justify="left", show_header=False, box=None,
              padding=(0, 1), expand=True)
    t.add_column("key", style="bold cyan", no_wrap=True, width=12)
    t.add_column("action", ratio=1)
    for r in rows:
        desc = Text(r.description)
        if r.mutating:
            desc.append(" ✎" if not read_only else " (read-only: unavailable)", style="yellow" if not read_only else "dim")
        t.add_row(Text(r.key), desc)
    return t


class HelpScreen(ModalScreen[None]):
    """Every key, per scope; ✎ marks actions that change the cluster (refused in read-only mode)."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss_help", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        rows = key_table(self.app)
        read_only = console(self).service.read_only
        with VerticalScroll(classes="dialog", id="help"):
            yield Static("[b]overlay-tui keys[/b]  ·  Ctrl+P: command palette (every action, and themes)  ·  "
                         "mouse: click a pane, a row, a footer key  ·  ✎ changes the cluster", classes="dialog-title")
            with Grid(id="help-grid"):
                for scope, group in groupby(rows, key=lambda r: r.scope):
                    yield Static(scope_table(scope, list(group), read_only), classes="help-scope")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
