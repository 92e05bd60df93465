"""Full detail of one captured frame: the fast path's summary, scapy's layers and a hex dump.

``service.frame_detail`` runs scapy (and imports it the first time, about a second), so it runs
in a thread worker; the screen shows "dissecting…" until the result arrives as a message.
"""
from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from core.model import Frame, FrameDetail
from tui.capture.frame_row import cells
from tui.console import console
from tui.panes.base import describe_error

#: (seq, step) -> the (seq, frame) ``step`` rows away in the list, or None at either end
Neighbour = Callable[[int, int], "tuple[int, Frame] | None"]


def _named(addr: str, name: str | None) -> str:
    """``addr (name)``: the raw value always, the name when known."""
    return f"{addr or '?'} ({name})" if name else (addr or "?")


class FrameDetailScreen(Screen):
    """One frame's layers and bytes; Esc goes back to the capture."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="frame-detail.back"),
                Binding("n", "step(1)", "Next frame", id="frame-detail.next"),
                Binding("p", "step(-1)", "Previous frame", id="frame-detail.previous")]
    DEFAULT_CSS = """
    FrameDetailScreen .detail-summary { height: auto; padding: 0 1; background: $boost; }
    FrameDetailScreen #frame-layers { height: 2fr; border: round $accent; }
    FrameDetailScreen #frame-hex { height: 1fr; border: round $accent; }
    FrameDetailScreen .detail-text { width: auto; }
    """

    class Dissected(Message):
        """scapy's view of the frame arrived (or failed: ``error``)."""

        def __init__(self, detail: FrameDetail | None, error: str | None = None) -> None:
            super().__init__()
            self.detail = detail  #: layers and hex dump
            self.error = error    #: why there is none

    def __init__(self, seq: int, frame: Frame, neighbour: Neighbour | None = None) -> None:
        super().__init__()
        self.seq = seq              #: the frame's number in the capture (0-based)
        self.frame = frame          #: the frame shown
        self.neighbour = neighbour  #: finds the next/previous frame the list shows

    def compose(self) -> ComposeResult:
        f, c = self.frame, cells(self.seq, self.frame)
        summary = (f"Frame {c['no']}  {c['time']} UTC  captured on {c['node']}  "
                   f"{f.wire_len} bytes on the wire, {len(f.raw)} captured\n"
                   f"outer {_named(f.outer_src, f.outer_src_name)} > {_named(f.outer_dst, f.outer_dst_name)}  "
                   f"udp {f.outer_sport} > {f.outer_dport}  VNI {c['vni'] or '-'}\n"
                   f"inner {_named(f.inner_src, f.src_name)} > {_named(f.inner_dst, f.dst_name)}  "
                   f"{f.proto} {f.error or f.info}")
        yield Static(summary, classes="detail-summary", markup=False)
        with VerticalScroll(id="frame-layers") as layers:
            layers.border_title = "Layers"
            yield Static("dissecting…", id="frame-layers-text", classes="detail-text", markup=False)
        with VerticalScroll(id="frame-hex") as hexbox:
            hexbox.border_title = "Hex"
            yield Static("", id="frame-hex-text", classes="detail-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.dissect()

    async def action_step(self, step: int) -> None:
        """Show the next (1) or previous (-1) frame of the list."""
        found = self.neighbour(self.seq, step) if self.neighbour else None
        if found is None:
            self.notify("no more frames that way", severity="warning", timeout=2)
            return
        self.seq, self.frame = found
        await self.recompose()
        self.dissect()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def dissect(self) -> None:
        try:
            detail = console(self).service.frame_detail(self.frame)
        except Exception as e:  # noqa: BLE001 - shown on the screen, the app goes on
            self.post_message(self.Dissected(None, describe_error(e)))
            return
        self.post_message(self.Dissected(detail))

    def on_frame_detail_screen_dissected(self, msg: Dissected) -> None:
        layers = self.query_one("#frame-layers-text", Static)
        if msg.detail is None:
            layers.update(f"could not dissect this frame: {msg.error}")
            return
        layers.update(msg.detail.layers.rstrip())
        self.query_one("#frame-hex-text", Static).update(msg.detail.hexdump.rstrip())
