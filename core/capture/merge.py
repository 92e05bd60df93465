"""Merge frames from several capture sources into time-ordered, bounded batches.

Producers (one per node) call :meth:`FrameMerger.add` with frames in their own time order. A frame
is released once no source can still send an earlier one: its timestamp is at or below the
*watermark*, the smallest "newest timestamp seen" over the sources still open (a k-way merge that
compares only the nodes' own clocks, so clock skew against this machine does not matter). A source
that stays silent would hold everything back, so a chunk is also released ``window`` seconds after it
arrived whatever the watermark. Released frames are sorted (timsort: near-linear on a few sorted
runs) into a bounded ready buffer: when the consumer falls behind, the oldest frames are dropped
and counted rather than letting memory grow. :meth:`FrameMerger.batches` yields
:class:`core.model.FrameBatch` objects bounded in count and in time.
"""
from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncIterator, Callable
from operator import attrgetter

from core.model import Frame, FrameBatch

_BY_TS = attrgetter("ts")
_NEVER = float("-inf")


class FrameMerger:
    """Time-ordered merge of per-source frame streams with a bounded buffer."""

    def __init__(self, sources: int, *, window: float = 0.1, interval: float = 0.05, max_batch: int = 2000,
                 max_buffered: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = sources
        self.window = window
        self.interval = interval
        self.max_batch = max_batch
        self.max_buffered = max_buffered
        self.clock = clock
        self._held: dict[str, deque[tuple[float, list[Frame]]]] = {}   # source -> (arrival, frames)
        self._newest: dict[str, float] = {}                             # source -> newest ts seen
        self._closed: set[str] = set()
        self._held_count = 0
        self._ready: deque[Frame] = deque()
        self._notices: list[str] = []
        self._dropped = 0
        self._malformed = 0
        self._open = sources
        self._wake = asyncio.Event()
        self.total_dropped = 0

    # --- producer side ---------------------------------------------------------------------
    def add(self, frames: list[Frame], malformed: int = 0, source: str = "") -> None:
        """Hand over frames of one source, in that source's time order."""
        self._malformed += malformed
        if not frames:
            return
        self._held.setdefault(source, deque()).append((self.clock(), frames))
        last = frames[-1].ts
        if last > self._newest.get(source, _NEVER):
            self._newest[source] = last
        self._held_count += len(frames)
        over = self._held_count + len(self._ready) - self.max_buffered
        if over > 0:
            self._drop(over)

    def notice(self, text: str) -> None:
        self._notices.append(text)
        self._wake.set()

    def source_ended(self, source: str = "") -> None:
        """One source is done for good (its notice, if any, was given with :meth:`notice`)."""
        self._open -= 1
        self._closed.add(source)
        self._wake.set()

    def source_paused(self, source: str) -> None:
        """One source stopped but will be tried again: it no longer holds back the others' frames."""
        self._closed.add(source)
        self._wake.set()

    def source_resumed(self, source: str) -> None:
        """A paused source sends again (its notice, if any, was given with :meth:`notice`)."""
        self._closed.discard(source)
        self._newest.pop(source, None)
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
        while n > 0 and self._held_count:
            # the oldest held chunk over all sources goes first
            q = min((q for q in self._held.values() if q), key=lambda q: q[0][1][0].ts)
            arrival, frames = q[0]
            if len(frames) <= n:
                q.popleft()
                self._held_count -= len(frames)
                n -= len(frames)
            else:
                del frames[:n]
                self._held_count -= n
                n = 0

    # --- consumer side ---------------------------------------------------------------------
    def watermark(self) -> float:
        """Frames at or before this timestamp can no longer be preceded by another source's."""
        open_ = [self._newest.get(s, _NEVER) for s in self._held if s not in self._closed]
        missing = self.sources - len(self._closed) - len(open_)      # open sources that sent nothing yet
        if missing > 0 or not open_:
            return _NEVER if missing > 0 else float("inf")
        return min(open_)

    def _release(self, everything: bool = False) -> None:
        if self.sources <= 1 or everything:
            mark, cutoff = float("inf"), float("inf")
        else:
            mark, cutoff = self.watermark(), self.clock() - self.window
        out: list[Frame] = []
        runs = 0
        for q in self._held.values():
            while q:
                arrival, frames = q[0]
                if arrival <= cutoff or frames[-1].ts <= mark:
                    q.popleft()
                    taken = frames
                else:
                    cut = bisect_right(frames, mark, key=_BY_TS)
                    if cut == 0:
                        break
                    taken, q[0] = frames[:cut], (arrival, frames[cut:])
                self._held_count -= len(taken)
                out.extend(taken)
                runs += 1
                if taken is not frames:
                    break
        if runs > 1:
            out.sort(key=_BY_TS)
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
            if done and not self._held_count:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
