"""A trace between two containers (:meth:`core.service.Service.trace`), shown hop by hop when it ends."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from core.model import TraceResult
from core.trace.format import trace_lines
from tui.console import console
from tui.panes.base import describe_error


class TraceDone(Message):
    """The trace finished (``result``) or failed (``error``)."""

    def __init__(self, result: TraceResult | None, error: str | None = None) -> None:
        super().__init__()
        self.result = result  #: every hop of every echo
        self.error = error    #: why it could not run


class TraceScreen(ModalScreen[None]):
    """Runs a trace from ``src`` (a container) to ``dst`` in a worker; `r` runs it again."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="trace.close"),
                Binding("r", "run", "Trace again", id="trace.again")]

    def __init__(self, src: str, dst: str) -> None:
        super().__init__()
        self.src, self.dst = src, dst

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="trace-dialog"):
            yield Static(Text.assemble(("Trace ", "bold"), f"{self.src} → {self.dst}: marked pings, watched in both "
                                       "containers and on both nodes' underlay"), classes="dialog-title")
            with VerticalScroll():
                yield Static("tracing…", id="trace-body")

    def on_mount(self) -> None:
        self.run_trace()

    def action_run(self) -> None:
        self.query_one("#trace-body", Static).update("tracing…")
        self.run_trace()

    @work(exclusive=True, exit_on_error=False, group="trace")
    async def run_trace(self) -> None:
        try:
            res = await console(self).service.trace(self.src, self.dst, 3)
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.post_message(TraceDone(None, describe_error(e)))
            return
        self.post_message(TraceDone(res))

    def on_trace_done(self, msg: TraceDone) -> None:
        body = self.query_one("#trace-body", Static)
        if msg.result is None:
            body.update(Text(f"✗ {msg.error}", style="bold red"))
            return
        t = Text()
        for line in trace_lines(msg.result):
            style = "red" if "not seen" in line or "last seen" in line else ("green" if "back in" in line else "")
            t.append(line + "\n", style=style)
        body.update(t)

    def action_close(self) -> None:
        self.dismiss(None)
