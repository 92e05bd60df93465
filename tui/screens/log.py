"""Follow a node's etcd or dockerd log live: lines land in a bounded buffer, the Log redraws at 10 Hz."""
from __future__ import annotations

from collections import deque

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from tui.console import console
from tui.panes.base import describe_error

MAX_LINES = 5000


class LogEnded(Message):
    """The log stream ended (or failed with ``error``)."""

    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error  #: why it ended, None when it simply finished


class LogScreen(ModalScreen[None]):
    """A live tail of ``source`` ("etcd" or "dockerd") on ``node``; Esc closes it and stops the tail."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="log.close"),
                Binding("f", "toggle_follow", "Follow on/off", id="log.follow")]

    def __init__(self, node: str, source: str) -> None:
        super().__init__(classes="modal")
        self.node, self.source = node, source
        self.pending: deque[str] = deque(maxlen=MAX_LINES)  #: lines received, not drawn yet
        self.received = 0  #: lines received in total

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="log-dialog"):
            yield Static(f"[b]{escape(self.source)} log[/b] on [b]{escape(self.node)}[/b]", classes="dialog-title")
            yield Log(max_lines=MAX_LINES, auto_scroll=True, id="log")
            yield Static("following…", id="log-status")

    def on_mount(self) -> None:
        self.follow()
        if console(self).refresh_timers:
            self.set_interval(0.1, self.flush)

    @work(exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        error = None
        try:
            async for batch in console(self).service.follow_log(self.node, self.source):
                self.pending.extend(batch.lines)  # a bounded buffer: a flood drops the oldest lines
                self.received += len(batch.lines)
        except Exception as e:  # noqa: BLE001 - shown in the screen
            error = describe_error(e)
        self.post_message(LogEnded(error))

    def flush(self) -> None:
        if self.pending:
            lines = list(self.pending)
            self.pending.clear()
            self.query_one(Log).write_lines(lines)
            self.query_one("#log-status", Static).update(f"following… {self.received} lines")

    def on_log_ended(self, msg: LogEnded) -> None:
        self.flush()
        status = self.query_one("#log-status", Static)
        if msg.error:
            status.update(Text(f"✗ {msg.error}", style="red"))
        else:
            status.update(f"end of stream · {self.received} lines")

    def action_toggle_follow(self) -> None:
        log = self.query_one(Log)
        log.auto_scroll = not log.auto_scroll

    def action_close(self) -> None:
        self.workers.cancel_node(self)
        self.dismiss(None)
