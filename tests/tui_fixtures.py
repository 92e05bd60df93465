"""Shared helpers of the console's tests: the recorded lab state and a way to wait for workers."""
from __future__ import annotations

from pathlib import Path

from scenes import settle, steady

from core.recorded.service import RecordedService
from tui.app import OverlayApp

STATE = Path(__file__).parent / "fixtures" / "lab_state.json"
SIZE = (120, 36)


def recorded_app(read_only: bool = False, **kw) -> OverlayApp:
    """The console on the recorded lab state, with timers, clocks and the watch switched off."""
    return steady(OverlayApp(RecordedService.load(STATE, read_only=read_only), refresh_timers=False, **kw))


async def press(pilot, *keys: str) -> None:
    """Press keys one by one, settling after each."""
    for k in keys:
        await pilot.press(k)
        await settle(pilot)


def table_rows(app, selector: str) -> list[list[str]]:
    """Plain text of a DataTable's rows."""
    table = app.screen.query_one(selector) if app.screen.query(selector) else app.screen_stack[0].query_one(selector)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def table_cells(app, selector: str) -> list[dict[str, str]]:
    """Plain text of a DataTable's rows, by column key."""
    table = app.screen_stack[0].query_one(selector)
    keys = [c.value for c in table.columns]
    return [dict(zip(keys, row)) for row in table_rows(app, selector)]
