"""The live frame list: a Line API widget (ScrollView + render_line) over a :class:`FrameRing`.

It never formats a frame that is not on screen, so its cost per redraw is constant whatever the
ring holds (a DataTable's grows with its rows; bench/ui.py prints what this list absorbs). The owner appends to
the ring and calls :meth:`FrameList.sync` on a timer; the list then follows the tail, or, once the
operator scrolled or moved the cursor up, keeps its place until ``end`` resumes following.
"""
from __future__ import annotations

from collections import OrderedDict

from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.model import Frame
from tui.capture.frame_ring import FilteredIndex, FrameRing
from tui.capture.frame_row import Column, layout, row_segments

_CACHE_ROWS = 512


class FrameList(ScrollView, can_focus=True):
    """Frames of a ring (or of its filtered index), one per line, newest at the bottom."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False, id="capture.cursor_up"),
        Binding("down", "cursor_down", "Down", show=False, id="capture.cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="capture.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="capture.page_down"),
        Binding("home", "first", "First frame", show=False, id="capture.first"),
        Binding("end", "follow", "Follow", show=False, id="capture.follow"),
        Binding("enter", "open", "Detail", show=False, id="capture.detail"),
    ]
    COMPONENT_CLASSES = {"frame-list--cursor"}
    DEFAULT_CSS = """
    FrameList { height: 1fr; overflow-x: hidden; }
    FrameList > .frame-list--cursor { background: $accent 40%; }
    FrameList:focus > .frame-list--cursor { background: $accent; }
    """

    follow: var[bool] = var(True)
    """True while the list shows the newest frames as they arrive."""

    class Opened(Message):
        """The operator asked for a frame's detail (enter or click)."""

        def __init__(self, seq: int, frame: Frame) -> None:
            super().__init__()
            self.seq = seq            #: the frame's sequence number in the ring
            self.frame = frame        #: the frame itself

    class ColumnsChanged(Message):
        """The list's width changed: its header must follow."""

        def __init__(self, columns: tuple[Column, ...], width: int) -> None:
            super().__init__()
            self.columns = columns  #: the columns as laid out now
            self.width = width      #: the width they fill

    def __init__(self, ring: FrameRing[Frame], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ring = ring
        self.index: FilteredIndex[Frame] | None = None
        self.cursor_seq: int | None = None   # None while following: the newest row
        self._top_seq = 0
        self._syncing = False
        self._cache: OrderedDict[tuple[int, bool], Strip] = OrderedDict()
        self._cols: tuple[Column, ...] = layout(80)
        self._cols_width = 0
        self.redraws = 0                     # sync() calls that changed something (for the bench)

    # --- rows -----------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self.index) if self.index is not None else len(self.ring)

    def seq_at(self, row: int) -> int:
        return self.index.seq_at(row) if self.index is not None else self.ring.start + row

    def row_of(self, seq: int) -> int:
        """Row of ``seq`` (or of the first row after it, when it is filtered out or dropped)."""
        if self.index is not None:
            return self.index.row_of(seq)
        return max(0, seq - self.ring.start)

    def set_index(self, index: FilteredIndex[Frame] | None) -> None:
        """Show only the rows of ``index`` (None: every frame of the ring)."""
        self.index = index
        self._cache.clear()
        self.sync(force=True)

    @property
    def cursor_row(self) -> int:
        n = self.row_count
        if self.follow or self.cursor_seq is None:
            return n - 1
        return min(self.row_of(self.cursor_seq), n - 1)

    def selected(self) -> tuple[int, Frame] | None:
        """The frame under the cursor, with its sequence number."""
        row = self.cursor_row
        if row < 0:
            return None
        seq = self.seq_at(row)
        return seq, self.ring.get(seq)

    # --- redraw ---------------------------------------------------------------------------
    def sync(self, force: bool = False) -> None:
        """Take in what the ring gained or lost since the last call; cheap when nothing changed."""
        n = self.row_count
        width = self.scrollable_content_region.width or self.size.width
        self._syncing = True
        try:
            self._set_virtual_size(Size(width, n))
            if self.follow:
                self.scroll_to(y=max(0, n - self.scrollable_content_region.height), animate=False, force=True)
            else:
                self.scroll_to(y=min(self.row_of(self._top_seq), max(0, n - 1)), animate=False, force=True)
        finally:
            self._syncing = False
        self.redraws += 1
        self.refresh()

    def _set_virtual_size(self, size: Size) -> None:
        """A list that grows while its scrollbar shows either way needs no layout of the whole screen (which
        assigning ``virtual_size`` does, ten times a second under a filtered live capture): only its scrollbar
        is updated then."""
        old, visible = self.virtual_size, self.scrollable_content_region.height
        if size == old:
            return
        if size.width == old.width and visible > 0 and min(size.height, old.height) > visible:
            self.set_reactive(FrameList.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size

    def on_resize(self, event: events.Resize) -> None:
        self._cache.clear()
        self.sync(force=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        row = int(new)
        if 0 <= row < self.row_count:
            self._top_seq = self.seq_at(row)
        if not self._syncing and new < old and new < self.max_scroll_y:   # not a clamp after a resize
            self._stop_following()

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.cursor_seq = None
            self.sync(force=True)

    def _stop_following(self) -> None:
        if self.follow:
            sel = self.selected()
            self.cursor_seq = sel[0] if sel else None
            self.set_reactive(FrameList.follow, False)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if width != self._cols_width and width > 0:
            self._cols, self._cols_width = layout(width), width
            self.post_message(self.ColumnsChanged(self._cols, width))
        row = self.scroll_offset.y + y
        if row >= self.row_count or width <= 0:
            return Strip.blank(width, self.rich_style)
        seq = self.seq_at(row)
        if seq < self.ring.start:            # dropped since the last sync: the next tick catches up
            return Strip.blank(width, self.rich_style)
        is_cursor = row == self.cursor_row
        key = (seq, is_cursor)
        strip = self._cache.get(key)
        if strip is None or strip.cell_length != width:
            base: Style = self.rich_style
            if is_cursor:
                base = base + self.get_component_rich_style("frame-list--cursor")
            strip = Strip(row_segments(seq, self.ring.get(seq), self._cols, width, base), width)
            self._cache[key] = strip
            if len(self._cache) > _CACHE_ROWS:
                self._cache.popitem(last=False)
        return strip

    # --- actions --------------------------------------------------------------------------
    def _move(self, delta: int) -> None:
        n = self.row_count
        if n == 0:
            return
        row = max(0, min(n - 1, self.cursor_row + delta))
        if delta > 0 and row == n - 1 and self.follow:
            return
        self.set_reactive(FrameList.follow, False)
        self.cursor_seq = self.seq_at(row)
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if row < top:
            top = row
        elif row >= top + height:
            top = row - height + 1
        self._top_seq = self.seq_at(top)
        # no cache clearing: a strip is cached per (frame, is cursor), so only the two rows that change render
        self.sync(force=True)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-max(1, self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        self._move(max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self._move(-self.row_count)

    def action_follow(self) -> None:
        """Resume following the newest frame."""
        self._cache.clear()
        if self.follow:
            self.sync(force=True)
        self.follow = True

    def action_open(self) -> None:
        sel = self.selected()
        if sel is not None:
            self.post_message(self.Opened(*sel))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._stop_following()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        row = self.scroll_offset.y + offset.y
        if 0 <= row < self.row_count:
            self.set_reactive(FrameList.follow, False)
            self.cursor_seq = self.seq_at(row)
            self._cache.clear()
            self.refresh()
            self.action_open()
