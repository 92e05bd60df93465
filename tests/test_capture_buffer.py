"""CaptureBuffer: pause holds frames back, resume appends them, the filter's index stays in step."""
from __future__ import annotations

from core.model import Frame
from tui.capture.buffer import CaptureBuffer
from tui.capture.filter import parse_filter


def frames(n: int, start: int = 0, proto: str = "ICMP") -> list[Frame]:
    return [Frame(ts=float(i), node="n1", raw=b"", wire_len=100, vni=256, proto=proto) for i in range(start, start + n)]


def test_pause_holds_back_and_resume_appends_in_order():
    buf = CaptureBuffer(10)
    buf.add(frames(4))
    buf.paused = True
    buf.add(frames(3, 4), malformed=1, dropped=2)
    assert len(buf.ring) == 4 and buf.held.total == 3 and buf.malformed == 1 and buf.dropped == 2
    buf.changed = False
    assert buf.resume() == 3
    assert [f.ts for f in buf.ring.items()] == [0, 1, 2, 3, 4, 5, 6] and buf.changed and not buf.paused


def test_a_long_pause_keeps_the_newest_and_counts_the_rest():
    buf = CaptureBuffer(5)
    buf.paused = True
    buf.add(frames(12))
    buf.resume()
    assert [f.ts for f in buf.ring.items()] == [7, 8, 9, 10, 11] and buf.dropped == 7


def test_filter_index_follows_batches_and_drops():
    buf = CaptureBuffer(6)
    buf.set_filter(parse_filter("proto=tcp"))
    for i in range(5):
        buf.add(frames(2, i * 4, "TCP") + frames(2, i * 4 + 2, "UDP"))
        assert all(s >= buf.ring.start for s in buf.index.seqs())
    assert [f.ts for f in buf.shown()] == [16.0, 17.0]
    buf.set_filter(None)
    assert buf.index is None and len(buf.shown()) == 6


def test_saved_is_lost_on_new_frames_and_reset_forgets_everything():
    buf = CaptureBuffer(4)
    buf.add(frames(2))
    buf.saved = True
    buf.add(frames(1))
    assert not buf.saved
    buf.set_filter(parse_filter("proto=icmp"))
    buf.reset()
    assert len(buf.ring) == 0 and buf.dropped == 0 and buf.filter is not None and len(buf.index) == 0
