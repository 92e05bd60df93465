"""The console's top line: what it shows (inventory or recorded state), the read-only badge, and a line
naming the doctor's failing checks once a report has some."""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from tui.console import console


class HeaderBar(Horizontal):
    """Title, source of the data, and badges (READ-ONLY, RECORDED)."""

    def compose(self) -> ComposeResult:
        svc = console(self).service
        inv = svc.inventory
        recorded = getattr(svc, "state_path", None)
        source = f"replay of {Path(recorded).name}" if recorded else f"inventory {inv.path}"
        yield Static("[b]overlay-tui[/b]", id="app-title")
        yield Static(f"{len(inv.nodes)} nodes · network [b]{escape(inv.cluster.network)}[/b] · {escape(source)}", id="app-source")
        if recorded:
            yield Static(" RECORDED ", classes="badge", id="recorded-badge")
        if svc.read_only:
            yield Static(" READ-ONLY ", classes="badge", id="read-only-badge")
        yield Static("", id="doctor-line")

    def show_doctor(self, failing: list[str]) -> None:
        """Name the failing checks (``[]`` hides the line)."""
        line = self.query_one("#doctor-line", Static)
        line.update(Text(f" ✗ doctor: {', '.join(failing)} fail(s) · ! ") if failing else "")
        line.set_class(bool(failing), "-shown")
