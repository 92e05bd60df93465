"""FrameRing and FilteredIndex: bounded, O(1) access by sequence number, filtered rows kept in step."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.capture.frame_ring import FilteredIndex, FrameRing


def test_ring_keeps_the_newest_and_counts_the_dropped():
    ring: FrameRing[int] = FrameRing(5)
    assert ring.extend([0, 1, 2]) == 0
    assert ring.extend([3, 4, 5, 6]) == 3
    assert len(ring) == 5 and ring.total == 7 and ring.dropped == 2
    assert ring.items() == [2, 3, 4, 5, 6]
    assert ring.get(2) == 2 and ring.get(6) == 6 and ring[0] == 2 and ring[-1] == 6
    with pytest.raises(IndexError):
        ring.get(1)                       # dropped
    with pytest.raises(IndexError):
        ring.get(7)                       # not yet appended
    assert ring.items(since=5) == [5, 6]


def test_a_batch_larger_than_the_ring_keeps_its_tail():
    ring: FrameRing[int] = FrameRing(4)
    ring.extend([100])
    ring.extend(list(range(10)))
    assert ring.items() == [6, 7, 8, 9] and ring.dropped == 7 and ring.total == 11
    assert ring.get(10) == 9


def test_bounded_memory_under_300k_frames():
    ring: FrameRing[object] = FrameRing(100_000)
    batch = [object() for _ in range(1000)]
    for _ in range(300):
        ring.extend(batch)
    assert len(ring) == 100_000
    assert ring.segments <= 101                             # batches let go as they fall out of the ring
    assert len(ring._segs) <= 2 * 101                       # ... and the list of them compacted
    assert ring.total == 300_000 and ring.dropped == 200_000


def test_clear_starts_again():
    ring: FrameRing[int] = FrameRing(3)
    ring.extend([1, 2, 3, 4])
    ring.clear()
    assert len(ring) == 0 and ring.total == 0 and ring.dropped == 0 and ring.items() == []


@given(st.integers(1, 20), st.lists(st.lists(st.integers(), max_size=30), max_size=20))
def test_ring_matches_a_list_model(capacity, batches):
    ring: FrameRing[int] = FrameRing(capacity)
    model: list[int] = []
    for b in batches:
        ring.extend(b)
        model.extend(b)
    assert ring.items() == model[-capacity:] if model else ring.items() == []
    assert ring.total == len(model) and ring.dropped == max(0, len(model) - capacity)
    for seq in range(ring.start, ring.end):
        assert ring.get(seq) == model[seq]


def test_filtered_index_follows_appends_and_drops():
    ring: FrameRing[int] = FrameRing(10)
    index: FilteredIndex[int] = FilteredIndex(lambda x: x % 2 == 0)
    for chunk in ([0, 1, 2, 3], [4, 5, 6, 7, 8, 9], [10, 11, 12]):
        first = ring.extend(chunk)
        index.add(first, chunk)
        index.prune(ring.start)
    assert ring.items() == list(range(3, 13))
    assert [ring.get(index.seq_at(r)) for r in range(len(index))] == [4, 6, 8, 10, 12]
    assert index.row_of(8) == 2 and index.row_of(9) == 3 and index.row_of(99) == 5
    index.rebuild(ring)
    assert index.seqs() == [4, 6, 8, 10, 12]


def test_filtered_index_compacts_its_pruned_head():
    ring: FrameRing[int] = FrameRing(1000)
    index: FilteredIndex[int] = FilteredIndex(lambda x: True)
    for i in range(100):
        first = ring.extend(list(range(i * 1000, (i + 1) * 1000)))
        index.add(first, range(i * 1000, (i + 1) * 1000))
        index.prune(ring.start)
    assert len(index) == 1000
    assert len(index._seqs) < 10_000                        # pruned entries are released
