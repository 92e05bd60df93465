"""What the capture pane holds of one capture, without any widget: pure Python, unit-testable.

- ``ring``: the newest frames, shown by the list (a :class:`FrameRing`; the oldest are dropped and
  counted, never backpressure on the capture);
- ``held``: what arrives while paused (the view stays frozen), appended to ``ring`` on resume;
- ``index``: the display filter's matches (a :class:`FilteredIndex`), kept in step batch by batch and
  pruned at once, so a repaint between two timer ticks never meets a dropped frame;
- counts: frames malformed, dropped before they reached the console, and whether all were saved.
"""
from __future__ import annotations

from core.model import Frame
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
        self._reindex()

    def clear(self) -> None:
        """Forget the frames shown (counts stay)."""
        self.ring.clear()
        self._reindex()

    def add(self, frames: list[Frame], malformed: int = 0, dropped: int = 0) -> None:
        """Take in one batch: O(batch), no formatting."""
        self.malformed += malformed
        self.source_dropped += dropped
        if not frames:
            return
        if self.paused:
            self.held.extend(frames)
            return
        self._append(frames)

    def _append(self, frames: list[Frame]) -> None:
        first = self.ring.extend(frames)
        self.saved = False
        self.changed = True
        if self.index is not None:
            self.index.add(first, frames)
            self.index.prune(self.ring.start)

    def resume(self) -> int:
        """Append what arrived while paused; returns how many frames that was."""
        self.paused = False
        frames = self.held.items()
        self.source_dropped += self.held.dropped
        arrived = self.held.total
        self.held.clear()
        if frames:
            self._append(frames)
        return arrived

    def set_filter(self, flt: CaptureFilter | None) -> None:
        """Show only what ``flt`` matches (None: everything); rebuilds the index over the ring."""
        self.filter = flt
        self._reindex()

    def _reindex(self) -> None:
        if self.filter is None:
            self.index = None
        else:
            self.index = FilteredIndex(self.filter.predicate)
            self.index.rebuild(self.ring)
        self.changed = True

    def shown(self) -> list[Frame]:
        """The frames the list shows (the filter's matches, or everything held), oldest first."""
        if self.index is None:
            return self.ring.items()
        get, start = self.ring.get, self.ring.start
        return [get(s) for s in self.index.seqs() if s >= start]
