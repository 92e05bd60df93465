"""Merge frames from several capture sources into time-ordered, bounded batches.

Producers (one per node) call :meth:`FrameMerger.add` with frames in their own time order. Each
chunk is held for a short reorder window after it arrives, then released, sorted by timestamp
with everything else released at the same tick, into a bounded ready buffer: when the consumer
falls behind, the oldest frames are dropped and counted rather than letting memory grow.
:meth:`FrameMerger.batches` yields :class:`core.model.FrameBatch` objects bounded in count and in
time. With a single source there is nothing to reorder and the window is skipped.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from operator import attrgetter

from core.model import Frame, FrameBatch

_BY_TS = attrgetter("ts")


class FrameMerger:
    """Time-ordered merge of per-source frame streams with a bounded buffer."""

    def __init__(self, sources: int, *, window: float = 0.08, interval: float = 0.05, max_batch: int = 2000,
                 max_buffered: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window if sources > 1 else 0.0
        self.interval = interval
        self.max_batch = max_batch
        self.max_buffered = max_buffered
        self.clock = clock
        self._held: deque[tuple[float, list[Frame]]] = deque()   # (arrival, frames) in arrival order
        self._held_count = 0
        self._ready: deque[Frame] = deque()
        self._notices: list[str] = []
        self._dropped = 0
        self._malformed = 0
        self._open = sources
        self._wake = asyncio.Event()
        self.total_dropped = 0

    # --- producer side ---------------------------------------------------------------------
    def add(self, frames: list[Frame], malformed: int = 0) -> None:
        """Hand over frames of one source (in that source's time order)."""
        self._malformed += malformed
        if not frames:
            return
        self._held.append((self.clock(), frames))
        self._held_count += len(frames)
        over = self._held_count + len(self._ready) - self.max_buffered
        if over > 0:
            self._drop(over)

    def notice(self, text: str) -> None:
        self._notices.append(text)
        self._wake.set()

    def source_ended(self) -> None:
        """One source is done for good (its notice, if any, was given with :meth:`notice`)."""
        self._open -= 1
        self._wake.set()

    @property
    def finished(self) -> bool:
        return self._open <= 0

    def _drop(self, n: int) -> None:
        self._dropped += n
        self.total_dropped += n
        while n > 0 and self._ready:
            self._ready.popleft()
            n -= 1
        while n > 0 and self._held:
            arrival, frames = self._held[0]
            if len(frames) <= n:
                self._held.popleft()
                self._held_count -= len(frames)
                n -= len(frames)
            else:
                del frames[:n]
                self._held_count -= n
                n = 0

    # --- consumer side ---------------------------------------------------------------------
    def _release(self, everything: bool = False) -> None:
        cutoff = self.clock() - self.window
        out: list[Frame] = []
        runs = 0
        while self._held and (everything or self._held[0][0] <= cutoff):
            _, frames = self._held.popleft()
            self._held_count -= len(frames)
            out.extend(frames)
            runs += 1
        if runs > 1:
            out.sort(key=_BY_TS)            # timsort: near-linear on a few sorted runs
        self._ready.extend(out)

    def _take(self) -> FrameBatch | None:
        n = min(self.max_batch, len(self._ready))
        if n == 0 and not self._notices and not self._dropped and not self._malformed:
            return None
        pop = self._ready.popleft
        batch = FrameBatch([pop() for _ in range(n)], dropped=self._dropped, malformed=self._malformed,
                           notices=self._notices)
        self._dropped = self._malformed = 0
        self._notices = []
        return batch

    async def batches(self) -> AsyncIterator[FrameBatch]:
        """Yield batches until every source has ended and everything was handed out."""
        while True:
            done = self.finished
            self._release(everything=done)
            while (batch := self._take()) is not None:
                yield batch
            if done and not self._held:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            if self._wake.is_set() and not self.finished:
                await asyncio.sleep(0)      # a notice: hand it out at once, with the frames before it
