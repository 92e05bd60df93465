"""What the capture pane holds of one capture, without any widget: pure Python, unit-testable.

- ``ring``: the newest frames, shown by the list (a :class:`FrameRing`; the oldest are dropped and
  counted, never backpressure on the capture);
- ``held``: what arrives while paused (the view stays frozen), appended to ``ring`` on resume;
- ``index``: the display filter's matches (a :class:`FilteredIndex`), kept in step batch by batch and
  pruned at once, so a repaint between two timer ticks never meets a dropped frame;
- counts: frames malformed, dropped before they reached the console, and whether all were saved;
- ``flows``: per-flow counters of every frame of the capture, summed batch by batch (a live capture's
  batches carry the worker's counts of their frames; other batches are counted here as they come), and
  ``filtered_flows``, those of the filter's matches, kept in step with ``index``: never recomputed over
  the ring except when the filter changes (its index is rebuilt then too).
"""
from __future__ import annotations

from collections.abc import Sequence

from core.capture.flows import FlowTable
from core.capture.names import learn_names, merge_names
from core.capture.wire import FrameColumns
from core.model import FlowDelta, FlowStat, Frame, Names
from tui.capture.filter import CaptureFilter
from tui.capture.frame_ring import FilteredIndex, FrameRing


class CaptureBuffer:
    """Frames of the current capture and the counts the status line shows."""

    def __init__(self, capacity: int) -> None:
        self.ring: FrameRing[Frame] = FrameRing(capacity)     #: what the list shows
        self.held: FrameRing[Frame] = FrameRing(capacity)     #: what arrived while paused
        self.filter: CaptureFilter | None = None              #: the display filter
        self.index: FilteredIndex[Frame] | None = None        #: its matches in ``ring``
        self.paused = False                                   #: new frames go to ``held``
        self.malformed = 0                                    #: frames the decoder could not read
        self.source_dropped = 0                               #: dropped before they reached us
        self.saved = False                                    #: every frame held was saved
        self.changed = False                                  #: ``ring`` changed since the last redraw
        self.flows = FlowTable()                              #: every frame of the capture, per flow
        self.filtered_flows: FlowTable | None = None          #: the filter's matches among those held, per flow
        self.flow_names = Names()                             #: what flows are labelled with
        self._memos: dict[int, tuple[list, dict[bytes, bool]]] = {}   # filter answers per string table
        self._uncounted: list[Sequence[Frame]] = []           # batches without flow counts, not yet counted
        self._uncounted_frames = 0

    @property
    def dropped(self) -> int:
        """Frames lost to the operator: dropped at the source or pushed out of the ring."""
        return self.source_dropped + self.ring.dropped

    def reset(self) -> None:
        """Forget every frame and count (a new capture); the filter stays."""
        self.ring.clear()
        self.held.clear()
        self.malformed = self.source_dropped = 0
        self.paused = self.saved = False
        self.flows = FlowTable()
        self._uncounted, self._uncounted_frames = [], 0
        self._reindex()

    def clear(self) -> None:
        """Forget the frames shown and their flows (counts stay)."""
        self.ring.clear()
        self.flows = FlowTable()
        self._uncounted, self._uncounted_frames = [], 0
        self._reindex()

    def add(self, frames: Sequence[Frame], malformed: int = 0, dropped: int = 0, *,
            flows: list[FlowDelta] | None = None, names: Names | None = None) -> None:
        """Take in one batch: O(batch) at most, no formatting; a batch with ``flows`` (a columnar one from
        the capture worker) costs O(flows in it), its frames are not even looked at."""
        self.malformed += malformed
        self.source_dropped += dropped
        if names is not None:
            self.flow_names = merge_names(names)
        if flows is not None:
            self.flows.merge_deltas(flows)
        elif frames:                          # counted when the flows are asked for (or when many wait)
            self._uncounted.append(frames)
            self._uncounted_frames += len(frames)
            if self._uncounted_frames > self.ring.capacity:
                self._count()
        if not frames:
            return
        if self.paused:
            self.held.extend(frames)
            return
        self._append(frames)

    def _append(self, frames: Sequence[Frame]) -> None:
        first = self.ring.extend(frames)
        self.saved = False
        self.changed = True
        if self.index is not None:
            self._match(first, frames)
            self.index.prune(self.ring.start)

    def _match(self, first: int, frames: Sequence[Frame]) -> None:
        """Add a batch's matches to ``index`` and their flows to ``filtered_flows``. A columnar batch (from the
        capture worker) is tested once per distinct filter key, its flows counted without building Frames."""
        assert self.index is not None and self.filter is not None and self.filtered_flows is not None
        if isinstance(frames, FrameColumns):
            memo = self._memos.get(id(frames.table))
            if memo is None or memo[0] is not frames.table:
                memo = self._memos[id(frames.table)] = (frames.table, {})
            rows = frames.select(self.filter.predicate, memo[1])
            self.index.add_seqs([first + r for r in rows])
            frames.count_flows(rows, self.filtered_flows)
        else:
            self.filtered_flows.add_many(self.index.add(first, frames))

    def resume(self) -> int:
        """Append what arrived while paused; returns how many frames that was."""
        self.paused = False
        batches = self.held.batches()
        self.source_dropped += self.held.dropped
        arrived = self.held.total
        self.held.clear()
        for batch in batches:
            self._append(batch)
        return arrived

    def set_filter(self, flt: CaptureFilter | None) -> None:
        """Show only what ``flt`` matches (None: everything); rebuilds the index over the ring."""
        self.filter = flt
        self._reindex()

    def _reindex(self) -> None:
        self._memos = {}
        if self.filter is None:
            self.index = self.filtered_flows = None
        else:
            self.index = FilteredIndex(self.filter.predicate)
            self.filtered_flows = FlowTable()
            for first, batch in zip(self.ring.firsts(), self.ring.batches()):
                self._match(first, batch)
        self.changed = True

    def _count(self) -> None:
        for frames in self._uncounted:
            self.flows.add_many(frames)
            learn_names(self.flow_names, frames)
        self._uncounted, self._uncounted_frames = [], 0

    def flow_stats(self) -> list[FlowStat]:
        """The flows view's rows, most bytes first: every flow of the capture, or of the filter's matches."""
        self._count()
        table = self.filtered_flows if self.filtered_flows is not None else self.flows
        return table.flows(self.flow_names)

    def shown(self) -> list[Frame]:
        """The frames the list shows (the filter's matches, or everything held), oldest first."""
        if self.index is None:
            return self.ring.items()
        get, start = self.ring.get, self.ring.start
        return [get(s) for s in self.index.seqs() if s >= start]
