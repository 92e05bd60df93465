"""Bounded storage for a live frame stream, addressed by absolute sequence numbers.

:class:`FrameRing` keeps the newest ``capacity`` frames as the batches they came in: appending a
batch costs O(1) (a columnar batch from the capture worker is never turned into Frames here), the
oldest frames are dropped (and counted) when it is full, and any frame still held is reached by its
sequence number (0 for the first frame ever appended) with a bisect over the batches.
:class:`FilteredIndex` is the list of sequence numbers a filter matches, kept up to
date batch by batch so that a filtered view scrolls as cheaply as the unfiltered one.

Pure Python with no UI import: the capture pane and its tests use it alike.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameRing(Generic[T]):
    """The newest ``capacity`` items of a stream; older ones are dropped and counted.

    Batches are kept as they came (a list, or a lazy sequence such as core's columnar batch, whose items
    are built only when read): appending costs O(1) whatever the batch's size, and a batch is let go
    once its newest item is older than the ring holds.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._segs: list[Sequence[T]] = []
        self._firsts: list[int] = []   # sequence number of each segment's first item
        self._head = 0                 # segments before it were let go (compacted now and then)
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

    @property
    def segments(self) -> int:
        """Batches held (some only in part)."""
        return len(self._segs) - self._head

    def extend(self, items: Sequence[T]) -> int:
        """Append a batch (kept as it is: do not change it afterwards); returns its first sequence number."""
        first = self.end
        n = len(items)
        if n == 0:
            return first
        self._segs.append(items)
        self._firsts.append(first)
        self.end += n
        if self.end - self.start > self.capacity:
            self.start = self.end - self.capacity
            firsts, h = self._firsts, self._head
            while h + 1 < len(firsts) and firsts[h + 1] <= self.start:
                self._segs[h] = ()          # let the batch go now
                h += 1
            self._head = h
            if h > 64 and h * 2 > len(firsts):
                del self._segs[:h], self._firsts[:h]
                self._head = 0
        return first

    def get(self, seq: int) -> T:
        """The item with sequence number ``seq`` (IndexError when it is not held)."""
        if not self.start <= seq < self.end:
            raise IndexError(f"sequence {seq} is not held (held: {self.start}..{self.end - 1})")
        k = bisect_right(self._firsts, seq, self._head) - 1
        return self._segs[k][seq - self._firsts[k]]

    def __getitem__(self, i: int) -> T:
        """The ``i``-th item held, oldest first (negative counts from the newest)."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self.get(self.start + i)

    def batches(self, since: int | None = None) -> list[Sequence[T]]:
        """The items held (or those with sequence >= ``since``) as slices of their batches, oldest first."""
        lo = self.start if since is None else max(since, self.start)
        if lo >= self.end:
            return []
        k = bisect_right(self._firsts, lo, self._head) - 1
        out = []
        for seg, first in zip(self._segs[k:], self._firsts[k:]):
            a = max(0, lo - first)
            out.append(seg[a:] if a else seg)
        return out

    def firsts(self, since: int | None = None) -> list[int]:
        """The sequence number of the first item of each of :meth:`batches` (same arguments)."""
        lo = self.start if since is None else max(since, self.start)
        if lo >= self.end:
            return []
        k = bisect_right(self._firsts, lo, self._head) - 1
        return [max(lo, f) for f in self._firsts[k:]]

    def items(self, since: int | None = None) -> list[T]:
        """Every item held (or those with sequence >= ``since``), oldest first."""
        out: list[T] = []
        for seg in self.batches(since):
            out.extend(seg)
        return out

    def clear(self) -> None:
        """Forget everything; sequence numbers and counts start again from 0."""
        self._segs, self._firsts, self._head = [], [], 0
        self.start = self.end = 0


class FilteredIndex(Generic[T]):
    """Sequence numbers of a ring's items that match a predicate, in order."""

    def __init__(self, predicate: Callable[[T], bool]) -> None:
        self.predicate = predicate
        self._seqs: list[int] = []
        self._head = 0           # entries before it were pruned (compacted now and then)

    def __len__(self) -> int:
        return len(self._seqs) - self._head

    def add(self, first_seq: int, items: Iterable[T]) -> list[T]:
        """Test a batch whose first item has sequence number ``first_seq``; returns the items that match."""
        pred = self.predicate
        hits = [(seq, item) for seq, item in enumerate(items, first_seq) if pred(item)]
        self._seqs.extend(seq for seq, _ in hits)
        return [item for _, item in hits]

    def add_seqs(self, seqs: list[int]) -> None:
        """Record matches found another way (ascending, after every match so far)."""
        self._seqs.extend(seqs)

    def rebuild(self, ring: FrameRing[T]) -> list[T]:
        """Test every item the ring holds (after the filter changed); returns those that match."""
        self._seqs = []
        self._head = 0
        out: list[T] = []
        for first, batch in zip(ring.firsts(), ring.batches()):
            out += self.add(first, batch)
        return out

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
