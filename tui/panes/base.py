"""The small base class every main-screen pane shares: a bordered, maximisable box holding a
DataTable that is updated in place, a `/` filter, and a refresh worker that never touches widgets.
"""
from __future__ import annotations

import logging
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from core.errors import OverlayError
from tui.console import console
from tui.messages import PaneFailed, PaneFilled

Cells = tuple[object, ...]
log = logging.getLogger("tui")


def describe_error(err: BaseException) -> str:
    """One sentence for the operator: typed errors speak for themselves, anything else is named.

    Every caller has caught ``err`` in a worker; it goes to the log file with its traceback here
    (a typed error at WARNING, anything else, a bug, at ERROR).
    """
    if isinstance(err, OverlayError):
        log.warning("%s", err, exc_info=err)
        return str(err)
    log.error("unexpected error in the console: %s: %s", type(err).__name__, err, exc_info=err)
    return f"{type(err).__name__}: {err}"


def unique_keys(rows: list[tuple[str, Cells]]) -> list[tuple[str, Cells]]:
    """Make row keys unique and non-empty (an unreachable member has no id yet, two may share one)."""
    seen: set[str] = set()
    out = []
    for key, cells in rows:
        base = key or "?"
        key, n = base, 2
        while key in seen:
            key, n = f"{base}#{n}", n + 1
        seen.add(key)
        out.append((key, cells))
    return out


class Pane(Vertical):
    """A main-screen pane: title, table, filter input and a periodic refresh from the service."""

    ALLOW_MAXIMIZE = True
    PANE_TITLE: ClassVar[str] = ""
    #: (column key, label) of the table, in order
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: seconds between refreshes (no timer when the app's refresh_timers is off)
    REFRESH_SECONDS: ClassVar[float] = 5.0

    BINDINGS = [Binding("slash", "filter", "Filter", id="pane.filter"),
                Binding("escape", "clear_filter", "Clear filter", show=False, id="pane.clear-filter")]

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self._rows: list[tuple[str, Cells]] = []
        self._filter = ""
        self._filled = False
        self._last_error: str | None = None
        self.summary = ""  #: what the border subtitle says when there is no error

    def compose(self) -> ComposeResult:
        yield DataTable(id=f"{self.id}-table", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="filter rows - Enter keeps it, Esc clears", classes="pane-filter")

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.border_title = self.PANE_TITLE
        for key, label in self.COLUMNS:
            self.table.add_column(label, key=key)
        self.border_subtitle = "loading…"
        self.fetch()
        if console(self).refresh_timers:
            self.set_interval(self.REFRESH_SECONDS, self._tick)

    def _tick(self) -> None:
        """The timer's refresh: skipped while the last one still runs (a slow node must not be cut off)."""
        if not any(w.node is self and w.group == "refresh" and w.is_running for w in self.workers):
            self.fetch()

    # --- data --------------------------------------------------------------------------------
    async def load(self) -> Message:
        """Call the service and return the message carrying the result (runs in a worker)."""
        raise NotImplementedError

    @work(exclusive=True, group="refresh", exit_on_error=False)
    async def fetch(self) -> None:
        """Refresh from the service; the result or the error arrives as a message."""
        try:
            msg = await self.load()
        except Exception as e:  # noqa: BLE001 - every failure is shown in the pane
            self.post_message(PaneFailed(self.id or "", describe_error(e)))
            return
        self.post_message(msg)

    def on_pane_failed(self, msg: PaneFailed) -> None:
        msg.stop()
        if msg.error != self._last_error:
            self.app.notify(msg.error, title=self.PANE_TITLE, severity="error", timeout=8, markup=False)
        self._last_error = msg.error
        self.add_class("-error")
        self.border_subtitle = Text("⚠ " + msg.error, style="bold red")
        self._mark_filled()

    def show_rows(self, rows: list[tuple[str, Cells]], summary: str) -> None:
        """Replace the pane's rows (keyed) and clear any error; the table updates in place."""
        rows = [(k, tuple(Text(c) if isinstance(c, str) else c for c in cells)) for k, cells in rows]  # never markup
        self._rows, self.summary, self._last_error = unique_keys(rows), summary, None
        self.remove_class("-error")
        self._render_rows()
        self._mark_filled()

    def _mark_filled(self) -> None:
        if not self._filled:
            self._filled = True
            self.post_message(PaneFilled(self.id or ""))

    def _render_rows(self) -> None:
        table = self.table
        rows = [r for r in self._rows if self._matches(r[1])]
        keys = [k for k, _ in rows]
        selected = self.selected_key
        with self.app.batch_update():
            if keys == [rk.value for rk in table.rows]:
                for key, cells in rows:
                    for (col, _), value in zip(self.COLUMNS, cells):
                        if table.get_cell(key, col) != value:
                            table.update_cell(key, col, value)
            else:
                table.clear()
                for column in table.columns.values():   # clear() keeps widths: let a long error's column shrink
                    column.content_width = column.label.cell_len
                for key, cells in rows:
                    table.add_row(*cells, key=key)
                if selected in keys:
                    table.move_cursor(row=keys.index(selected), animate=False)
        self._show_summary()

    def _show_summary(self) -> None:
        if self._last_error is None:
            flt = f" · filter “{self._filter}”" if self._filter else ""
            self.border_subtitle = Text(self.summary + flt)   # names a leader, the typed filter: never markup

    def _matches(self, cells: Cells) -> bool:
        if not self._filter:
            return True
        return self._filter in " ".join(str(c) for c in cells).lower()

    @property
    def selected_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # --- filter ------------------------------------------------------------------------------
    def action_refresh(self) -> None:
        self.fetch()

    def on_data_table_row_selected(self, event) -> None:
        """Enter (or a click on the selected row) opens the row's detail."""
        event.stop()
        self.action_detail()

    def action_detail(self) -> None:
        """Open the selected row's detail; panes with one override this."""

    def action_filter(self) -> None:
        box = self.query_one(".pane-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, ".pane-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._filter = event.value.strip().lower()
        self._render_rows()

    @on(Input.Submitted, ".pane-filter")
    def _filter_done(self) -> None:
        box = self.query_one(".pane-filter", Input)
        box.display = bool(box.value)
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":  # otherwise Esc goes on to the screen (restore a maximised pane)
            return bool(self._filter) or self.query_one(".pane-filter", Input).display
        return True

    def action_clear_filter(self) -> None:
        box = self.query_one(".pane-filter", Input)
        box.value = ""
        box.display = False
        self._filter = ""
        self._render_rows()
        self.table.focus()
