"""Bounded storage for a live frame stream, addressed by absolute sequence numbers.

:class:`FrameRing` keeps the newest ``capacity`` frames in a preallocated circular list: appending
a batch costs one or two slice assignments, the oldest frames are dropped (and counted) when it is
full, and any frame still held is reached in O(1) by its sequence number (0 for the first frame
ever appended). :class:`FilteredIndex` is the list of sequence numbers a filter matches, kept up to
date batch by batch so that a filtered view scrolls as cheaply as the unfiltered one.

Pure Python with no UI import: the capture pane and its tests use it alike.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class FrameRing(Generic[T]):
    """The newest ``capacity`` items of a stream; older ones are dropped and counted."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._buf: list[T | None] = [None] * capacity
        self.start = 0          # sequence number of the oldest item held
        self.end = 0            # sequence number the next item will get

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def dropped(self) -> int:
        """Items appended but no longer held (the ring was full)."""
        return self.start

    @property
    def total(self) -> int:
        """Items ever appended."""
        return self.end

    def extend(self, items: Sequence[T]) -> int:
        """Append a batch; returns the sequence number of its first item."""
        first = self.end
        n = len(items)
        if n == 0:
            return first
        cap = self.capacity
        if n > cap:                                  # only the newest `cap` can be kept
            items = items[n - cap:]
        k = len(items)
        pos = (self.end + n - k) % cap
        head = min(k, cap - pos)
        self._buf[pos:pos + head] = items[:head]
        if head < k:
            self._buf[0:k - head] = items[head:]
        self.end += n
        if self.end - self.start > cap:
            self.start = self.end - cap
        return first

    def get(self, seq: int) -> T:
        """The item with sequence number ``seq`` (IndexError when it is not held)."""
        if not self.start <= seq < self.end:
            raise IndexError(f"sequence {seq} is not held (held: {self.start}..{self.end - 1})")
        return self._buf[seq % self.capacity]  # type: ignore[return-value]

    def __getitem__(self, i: int) -> T:
        """The ``i``-th item held, oldest first (negative counts from the newest)."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._buf[(self.start + i) % self.capacity]  # type: ignore[return-value]

    def items(self, since: int | None = None) -> list[T]:
        """Every item held (or those with sequence >= ``since``), oldest first."""
        lo = self.start if since is None else max(since, self.start)
        if lo >= self.end:
            return []
        cap = self.capacity
        a, b = lo % cap, self.end % cap
        if a < b:
            return cast("list[T]", self._buf[a:b])
        return cast("list[T]", self._buf[a:] + self._buf[:b])

    def clear(self) -> None:
        """Forget everything; sequence numbers and counts start again from 0."""
        self._buf = [None] * self.capacity
        self.start = self.end = 0


class FilteredIndex(Generic[T]):
    """Sequence numbers of a ring's items that match a predicate, in order."""

    def __init__(self, predicate: Callable[[T], bool]) -> None:
        self.predicate = predicate
        self._seqs: list[int] = []
        self._head = 0           # entries before it were pruned (compacted now and then)

    def __len__(self) -> int:
        return len(self._seqs) - self._head

    def add(self, first_seq: int, items: Iterable[T]) -> None:
        """Test a batch whose first item has sequence number ``first_seq``."""
        pred = self.predicate
        self._seqs.extend(seq for seq, item in enumerate(items, first_seq) if pred(item))

    def rebuild(self, ring: FrameRing[T]) -> None:
        """Test every item the ring holds (after the filter changed)."""
        self._seqs = []
        self._head = 0
        self.add(ring.start, ring.items())

    def prune(self, oldest: int) -> None:
        """Forget sequence numbers below ``oldest`` (dropped from the ring)."""
        seqs = self._seqs
        if self._head < len(seqs) and seqs[self._head] < oldest:
            self._head = bisect_left(seqs, oldest, self._head)
            if self._head > 4096 and self._head * 2 > len(seqs):
                del seqs[:self._head]
                self._head = 0

    def seq_at(self, row: int) -> int:
        """Sequence number of the ``row``-th match."""
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self._seqs[self._head + row]

    def row_of(self, seq: int) -> int:
        """Row of the first match with sequence >= ``seq`` (``len(self)`` when there is none)."""
        return bisect_left(self._seqs, seq, self._head) - self._head

    def seqs(self) -> list[int]:
        """Every matching sequence number, oldest first."""
        return self._seqs[self._head:]
