"""A read-only card of label/value rows (a node's or an etcd member's full state), opened with Enter."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

Row = tuple[str, object]


def card(rows: list[Row]) -> Table:
    """Labels in the first column, values (text or rich renderables) in the second."""
    t = Table.grid(padding=(0, 2), expand=True)
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column(ratio=1)
    for label, value in rows:
        if isinstance(value, str):
            value = Text(value)          # values come from nodes and etcd: never markup
        t.add_row(Text(label), value if value not in (None, "") and str(value) else Text("—", style="dim"))  # type: ignore[arg-type]
    return t


class DetailScreen(ModalScreen[None]):
    """``title`` over a card of ``rows``; Esc, q or Enter closes it."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="detail.close")]

    def __init__(self, title: str, rows: list[Row]) -> None:
        super().__init__()
        self.title_text, self.rows = title, rows

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="detail-card"):
            yield Static(self.title_text, classes="dialog-title")
            with VerticalScroll():
                yield Static(card(self.rows))

    def action_close(self) -> None:
        self.dismiss(None)
