"""The capture pane: choose nodes, start / pause / stop a live VXLAN capture and browse its frames.

A worker consumes ``service.capture(nodes)`` and appends whole :class:`FrameBatch` batches to a
bounded :class:`FrameRing` (the oldest frames are dropped and counted: no backpressure on the
capture). Nothing is drawn per packet: a 5 Hz timer tells the :class:`FrameList` to take in
what arrived, and the list formats only the rows on screen. While paused the capture goes on into
a second ring and the view stays frozen; resuming appends what arrived. A filter keeps a
:class:`FilteredIndex` up to date batch by batch. ``F`` swaps the list for the flows view, whose
rows come once a second from the buffer's flow counters (summed batch by batch, from the capture
worker's per-batch counts when it sends them: never recomputed over the ring); ``w`` saves the frames
shown to a pcap.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, Static
from textual.worker import Worker, WorkerState

from core.errors import OverlayError
from core.model import FlowStat, Frame, FrameBatch
from tui.capture.buffer import CaptureBuffer
from tui.capture.filter import CaptureFilter, CaptureFilterError, parse_filter
from tui.capture.flows_view import FlowsView, flow_filter
from tui.capture.frame_list import FrameList
from tui.capture.frame_ring import FilteredIndex, FrameRing
from tui.capture.frame_row import header_text
from tui.console import console
from tui.modals.capture_nodes import CaptureNodesModal
from tui.modals.confirm import ConfirmModal
from tui.modals.save_pcap import SavePcapModal
from tui.screens.frame_detail import FrameDetailScreen

CAPACITY = 100_000
REDRAW_SECONDS = 0.2
FLOWS_SECONDS = 1.0
SUBTITLE_SECONDS = 1.0
_WARN_WORDS = ("ended", "failed", "lost", "unavailable", "error", "dropped")


def _describe(err: BaseException) -> str:
    from tui.panes.base import describe_error  # the console's one way of wording errors
    return describe_error(err)


class CapturePane(Widget):
    """Live capture of the underlay's VXLAN frames; reads ``console(self).service`` (a core.service.Service)."""

    ALLOW_MAXIMIZE = True
    CAPACITY: ClassVar[int] = CAPACITY
    BINDINGS = [
        Binding("s", "start", "Start", id="capture.start"),
        Binding("p", "pause", "Pause/resume", id="capture.pause"),
        Binding("x", "stop", "Stop", id="capture.stop"),
        Binding("slash,f", "filter", "Filter", id="capture.filter"),
        Binding("F", "toggle_flows", "Flows", id="capture.flows"),
        Binding("w", "save", "Save pcap", id="capture.save"),
        Binding("c", "clear", "Clear", show=False, id="capture.clear"),
        Binding("l", "links", "Links", id="capture.links"),
        # the frame list binds these too (same ids, so a keymap moves both); here they reach `?` and the palette
        Binding("enter", "open", "Frame detail", show=False, id="capture.detail"),
        Binding("end", "follow", "Follow newest", show=False, id="capture.follow"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="capture.clear-filter"),
    ]
    DEFAULT_CSS = """
    CapturePane { height: 1fr; layout: vertical; border: round $primary; }
    CapturePane:focus-within { border: round $accent; }
    CapturePane > #capture-header { height: 1; text-style: bold; background: $boost; }
    CapturePane > ContentSwitcher { height: 1fr; }
    CapturePane > #capture-filter { display: none; height: 3; border: tall $accent; }
    CapturePane > #capture-filter.-error { border: tall $error; }
    CapturePane > #capture-status { height: 1; background: $boost; }
    CapturePane > #capture-status.-error { color: $error; }
    """

    class FlowsComputed(Message):
        """Flow statistics for the flows view (from the buffer's counters)."""

        def __init__(self, stats: list[FlowStat]) -> None:
            super().__init__()
            self.stats = stats  #: most bytes first

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, CapturePane.FlowsComputed)

    class StateChanged(Message):
        """The capture started, paused, resumed, stopped, ended or failed (tests wait on it)."""

        def __init__(self, state: str) -> None:
            super().__init__()
            self.state = state  #: "capturing", "paused", "stopped", "ended" or "failed"

    def __init__(self, *, id: str | None = "capture", capacity: int | None = None) -> None:
        super().__init__(id=id, classes="pane")
        self.buffer = CaptureBuffer(capacity or self.CAPACITY)  #: the frames and their counts
        self.state = "idle"                                   #: idle/capturing/paused/stopped/ended/failed
        self.nodes: list[str] = []                            #: the nodes of the current capture
        self.note = "press s to choose nodes and start capturing"  #: latest notice
        self.error: str | None = None
        self._worker: Worker | None = None
        self._status_shown: Text | None = None
        self._stopping = False
        self._rate = (time.monotonic(), 0, 0.0)               # (when, total then, frames/s)
        self._subtitle = ("", 0.0)                            # (state, when) the border's subtitle was last set

    # --- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="capture-header", markup=False)
        with ContentSwitcher(initial="capture-frames"):
            yield FrameList(self.ring, id="capture-frames")
            yield FlowsView(id="capture-flows")
        yield Input(placeholder="filter: vni=256 node=docker-node1 host=10.0.0.2 proto=icmp (Enter applies, Esc "
                                "cancels)", id="capture-filter")
        yield Static("", id="capture-status")

    @property
    def ring(self) -> FrameRing[Frame]:
        return self.buffer.ring

    @property
    def held(self) -> FrameRing[Frame]:
        return self.buffer.held

    @property
    def index(self) -> FilteredIndex[Frame] | None:
        return self.buffer.index

    @property
    def filter(self) -> CaptureFilter | None:
        return self.buffer.filter

    @property
    def malformed(self) -> int:
        return self.buffer.malformed

    @property
    def frame_list(self) -> FrameList:
        return self.query_one(FrameList)

    @property
    def flows_view(self) -> FlowsView:
        return self.query_one(FlowsView)

    @property
    def showing_flows(self) -> bool:
        return self.query_one(ContentSwitcher).current == "capture-flows"

    def on_mount(self) -> None:
        self.border_title = "Capture"
        self.set_interval(REDRAW_SECONDS, self.redraw)
        self.set_interval(FLOWS_SECONDS, self._flows_tick)
        self._show_status()

    @on(FrameList.ColumnsChanged)
    def _columns_changed(self, msg: FrameList.ColumnsChanged) -> None:
        self.query_one("#capture-header", Static).update(header_text(msg.columns, msg.width))

    # --- capture ----------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.state in ("capturing", "paused"):
            self.app.notify("a capture is running: stop it (x) before starting another", severity="warning")
            return
        names = [n.name for n in console(self).service.inventory.nodes]
        warning = (f"Starting discards the {len(self.ring):,} frames of the last capture (Esc, then w saves them)."
                   if len(self.ring) and not self.buffer.saved else "")
        self.app.push_screen(CaptureNodesModal(names, self.nodes or None, warning), self._chosen)

    def _chosen(self, nodes: list[str] | None) -> None:
        if nodes:
            self.start_capture(nodes)

    def start_capture(self, nodes: list[str]) -> None:
        """Forget the last capture's frames and capture on ``nodes``."""
        self.buffer.reset()
        self.frame_list.set_index(self.buffer.index)
        self.nodes, self.error, self._stopping = list(nodes), None, False
        self.note = f"starting capture on {', '.join(nodes)}…"
        self._rate = (time.monotonic(), 0, 0.0)
        self.frame_list.follow = True
        self._set_state("capturing")
        self._worker = self.run_worker(self._consume(list(nodes)), name="capture", group="capture",
                                       exclusive=True, exit_on_error=False)
        self.redraw(force=True)

    async def _consume(self, nodes: list[str]) -> None:
        stream = console(self).service.capture(nodes)
        try:
            async for batch in stream:
                self.absorb(batch)
                await asyncio.sleep(0)        # a producer that never awaits must not starve the UI
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def absorb(self, batch: FrameBatch) -> None:
        """Take in one batch (cheap: no formatting, no drawing; the timer redraws)."""
        for text in batch.notices:
            self._notice(text)
        self.buffer.add(batch.frames, batch.malformed, batch.dropped, flows=batch.flows, names=batch.names)

    def _notice(self, text: str) -> None:
        self.note = text
        if any(w in text for w in _WARN_WORDS) and not text.startswith("recording ended"):
            self.app.notify(text, title="capture", severity="warning", markup=False)

    def action_pause(self) -> None:
        if self.state == "capturing":
            self.buffer.paused = True
            self._set_state("paused")
        elif self.state == "paused":
            self._resume()
        else:
            self.app.notify("no capture is running (s starts one)", severity="warning")

    def _resume(self) -> None:
        self.buffer.resume()
        self._set_state("capturing")
        self.redraw()

    def action_stop(self) -> None:
        if self.state not in ("capturing", "paused"):
            self.app.notify("no capture is running", severity="warning")
            return
        if self.state == "paused":
            self._resume()
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
        self.note = "capture stopped"
        self._set_state("stopped")

    def action_clear(self) -> None:
        if not len(self.ring):
            return
        if self.buffer.saved:
            self._clear()
            return
        self.app.push_screen(ConfirmModal(f"Clear the {len(self.ring):,} frames shown? They are not saved.",
                                          confirm="Clear"), lambda yes: self._clear() if yes else None)

    def _clear(self) -> None:
        self.buffer.clear()
        self.frame_list.set_index(self.buffer.index)
        self.redraw(force=True)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        event.stop()
        if event.state == WorkerState.SUCCESS and not self._stopping:
            if self.state == "paused":
                self._resume()
            self._set_state("ended")
        elif event.state == WorkerState.ERROR:
            if self.state == "paused":
                self._resume()
            self.error = _describe(event.worker.error) if event.worker.error else "the capture failed"
            self.app.notify(self.error, title="capture failed", severity="error", timeout=8, markup=False)
            self._set_state("failed")
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.redraw(force=True)
            if self.showing_flows:
                self._compute_flows()

    def _set_state(self, state: str) -> None:
        self.state = state
        self._show_status()
        self.post_message(self.StateChanged(state))

    # --- redraw -----------------------------------------------------------------------------
    def redraw(self, force: bool = False) -> None:
        """The timer's tick: let the list take in new frames (never while paused), update the status."""
        if (self.buffer.changed or force) and self.state != "paused":
            self.buffer.changed = False
            self.frame_list.sync()
        self._show_status(force)

    def _frames_per_second(self) -> float:
        now = time.monotonic()
        when, total, rate = self._rate
        if now - when >= 1.0:
            arrived = self.ring.total + self.held.total
            rate = (arrived - total) / (now - when)
            self._rate = (now, arrived, rate)
        return rate

    def status_text(self) -> Text:
        """The status line: state, counts, filter, latest notice."""
        icons = {"idle": "○", "capturing": "●", "paused": "⏸", "stopped": "■", "ended": "■", "failed": "✖"}
        parts = [f"{icons.get(self.state, '')} {self.state}"]
        if self.nodes:
            parts.append(", ".join(self.nodes))
        parts.append(f"{self.ring.total:,} frames")
        if self.state == "capturing" and console(self).refresh_timers:   # a rate only where a timer keeps it fresh
            parts.append(f"{self._frames_per_second():,.0f}/s")
        parts.append(f"{self.buffer.dropped:,} dropped")
        if self.malformed:
            parts.append(f"{self.malformed:,} malformed")
        if self.state == "paused":
            parts.append(f"{self.held.total:,} arrived while paused")
        if self.filter is not None:
            parts.append(f"filter {self.filter.text}: {len(self.index or ()):,} shown")
        if self.error:                        # the error first: the line may be cut at the right
            text = Text("✖ " + self.error, style="bold red")
            text.append(" · " + " · ".join(parts))
            return text
        text = Text(" · ".join(parts))
        if self.note:
            text.append(" · ")
            text.append(self.note, style="dim")
        return text

    def _show_status(self, force: bool = False) -> None:
        status = self.query_one("#capture-status", Static)
        text = self.status_text()
        if text != self._status_shown:           # the timer calls this 10 times a second: redraw on change only
            self._status_shown = text
            status.update(text, layout=False)      # one line, fixed height: no layout pass 10 times a second
        status.set_class(self.error is not None, "-error")
        now = time.monotonic()
        if force or self.state != self._subtitle[0] or now - self._subtitle[1] >= SUBTITLE_SECONDS:
            self._subtitle = (self.state, now)    # the border repaints the whole pane: once a second is plenty
            self.border_subtitle = f"{self.state} · {self.ring.total:,} frames"

    # --- filter -----------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#capture-filter", Input)
        box.value = self.filter.text if self.filter else ""
        box.display = True
        box.focus()

    @on(Input.Submitted, "#capture-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            self.apply_filter(event.value)
        except CaptureFilterError as e:
            self.error = str(e)
            event.input.add_class("-error")
            self._show_status()
            return
        event.input.remove_class("-error")
        event.input.display = False
        self.frame_list.focus()

    def apply_filter(self, text: str) -> None:
        """Show only the frames matching ``text`` (empty: all); CaptureFilterError if it is invalid."""
        flt = parse_filter(text, [n.name for n in console(self).service.inventory.nodes])
        self.error = None
        self.buffer.set_filter(flt)
        self.frame_list.set_index(self.buffer.index)
        self._show_status()
        if self.showing_flows:
            self._compute_flows()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":  # otherwise Esc goes on (restores a maximised pane)
            return self.filter is not None or self.query_one("#capture-filter", Input).display
        return True

    def action_clear_filter(self) -> None:
        box = self.query_one("#capture-filter", Input)
        if box.display:                       # Esc while editing: cancel the edit, keep the filter
            box.display = False
            box.remove_class("-error")
            self.error = None
            self._show_status()
            self.frame_list.focus()
            return
        self.apply_filter("")

    # --- links ------------------------------------------------------------------------------
    def action_links(self) -> None:
        """Open the Links grid on the capture's nodes (every node when none chosen yet); Enter on a
        cell comes back here with that pair's frames filtered."""
        from tui.screens.links import LinksScreen

        self.app.push_screen(LinksScreen(self.nodes or None), self._links_closed)

    def _links_closed(self, flt: str | None) -> None:
        if flt:
            self.apply_filter(flt)
            if self.state not in ("capturing", "paused") and not len(self.ring):
                self.app.notify(f"filter {flt} applied: start a capture (s) to see that pair's frames",
                                title="links")
            self.frame_list.focus()

    # --- detail, flows, save ----------------------------------------------------------------
    def action_open(self) -> None:
        """Open the detail of the frame under the list's cursor."""
        self.frame_list.action_open()

    def action_follow(self) -> None:
        """Follow the newest frames again."""
        self.frame_list.action_follow()

    @on(FrameList.Opened)
    def _open(self, msg: FrameList.Opened) -> None:
        self.app.push_screen(FrameDetailScreen(msg.seq, msg.frame, self.neighbour))

    def neighbour(self, seq: int, step: int) -> tuple[int, Frame] | None:
        """The frame ``step`` rows from frame ``seq`` in what the list shows (None past either end)."""
        fl = self.frame_list
        row = fl.row_of(seq) + step
        if not 0 <= row < fl.row_count:
            return None
        nseq = fl.seq_at(row)
        return nseq, self.ring.get(nseq)

    def shown_frames(self) -> list[Frame]:
        """The frames the list shows (the filter's matches, or everything held)."""
        return self.buffer.shown()

    def action_toggle_flows(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        header = self.query_one("#capture-header", Static)
        if self.showing_flows:
            switcher.current = "capture-frames"
            header.display = True
            self.frame_list.focus()
        else:
            switcher.current = "capture-flows"
            header.display = False
            self._compute_flows()
            self.flows_view.query_one("DataTable").focus()

    def _flows_tick(self) -> None:
        if self.showing_flows and self.state == "capturing":
            self._compute_flows()

    def _compute_flows(self) -> None:
        """The flows view's rows from the buffer's counters (O(flows), never O(frames))."""
        try:
            stats = self.buffer.flow_stats()
        except Exception as e:  # noqa: BLE001 - shown in the status line
            self.error = f"flows: {_describe(e)}"
            return
        self.post_message(self.FlowsComputed(stats))

    def on_capture_pane_flows_computed(self, msg: FlowsComputed) -> None:
        self.flows_view.show(msg.stats)

    @on(FlowsView.FlowChosen)
    def _flow_chosen(self, msg: FlowsView.FlowChosen) -> None:
        try:
            self.apply_filter(flow_filter(msg.stat))
        except CaptureFilterError as e:       # a label the filter cannot express: say so
            self.app.notify(str(e), title="filter", severity="warning", markup=False)
            return
        self.action_toggle_flows()

    def action_save(self) -> None:
        frames = self.shown_frames()
        if not frames:
            self.app.notify("nothing to save: no frames captured yet", severity="warning")
            return
        try:
            offered = console(self).service.save_target("capture.pcap")   # read-only: refused here, and again in core
        except OverlayError as e:
            self.app.notify(escape(str(e)), title="save pcap", severity="warning")
            return
        what = f"{len(frames):,} frames" + (f" (filter: {self.filter.text})" if self.filter else "")
        everything = self.ring.total if self.index is None else None   # saving all frames held: no loss on clear
        served_dir = str(Path(offered.path).parent) if offered.served else None

        def save(choice: tuple[str, bool] | None) -> None:
            if choice:
                self._save(frames, *choice, everything=everything)
        self.app.push_screen(SavePcapModal(what, served_dir=served_dir), save)

    @work(group="capture-save", exit_on_error=False)
    async def _save(self, frames: list[Frame], path: str, replace: bool = False, *,
                    everything: int | None = None) -> None:
        try:
            target = console(self).service.save_target(path)
            n = await console(self).service.save_pcap(frames, path, replace=replace)
        except Exception as e:  # noqa: BLE001 - a failed save is reported, the capture goes on
            self.error = f"saving {path} failed: {_describe(e)}"
            self.app.notify(escape(self.error), title="save pcap", severity="error", timeout=8)
            self._show_status()
            return
        self.buffer.saved = everything == self.ring.total
        self.note = f"saved {n:,} frames to {target.path}"
        if target.fetch:
            self.note += f" on the serving host; fetch it with: {target.fetch}"
        self.app.notify(escape(self.note), title="save pcap", timeout=20 if target.fetch else 5)
        self._show_status()
