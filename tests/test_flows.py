"""Per-flow counters: keys, bytes, current rates, per-VNI totals, top talkers, names; and the batch
(numpy) file path giving exactly what the per-frame path gives, malformed frames included."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.capture.batch import flows_from_pcap
from core.capture.decode import VxlanDecoder
from core.capture.flows import FlowTable
from core.capture.pcap import PcapWriter, read_pcap_frames
from core.model import FlowStat, Frame, Names
from tests.vxlan_frames import inner_frame, mixed_frames, vxlan, write_mixed_pcap


def _frame(ts, vni=256, src="10.0.0.2", dst="10.0.0.3", proto="ICMP", length=100, error=None) -> Frame:
    return Frame(ts, "n1", b"", length, vni=vni, inner_src=src, inner_dst=dst, proto=proto, length=length,
                 error=error)


def test_flows_are_keyed_by_vni_src_dst_proto_and_sorted_by_bytes():
    t = FlowTable()
    t.add_many([_frame(0.0), _frame(0.1), _frame(0.2, proto="TCP", length=1000), _frame(0.3, vni=257),
                _frame(0.4, src="10.0.0.3", dst="10.0.0.2")])
    got = [(s.vni, s.inner_src, s.inner_dst, s.proto, s.packets, s.bytes) for s in t.flows()]
    assert got == [(256, "10.0.0.2", "10.0.0.3", "TCP", 1, 1000), (256, "10.0.0.2", "10.0.0.3", "ICMP", 2, 200),
                   (256, "10.0.0.3", "10.0.0.2", "ICMP", 1, 100), (257, "10.0.0.2", "10.0.0.3", "ICMP", 1, 100)]
    assert t.counts() == {"frames": 5, "malformed": 0, "not_vxlan": 0, "flows": 4}


def test_current_rate_counts_the_last_window_only():
    t = FlowTable(window=2.0, slots=10)
    t.add_many([_frame(ts / 10) for ts in range(100)])          # 10 frames/s for 10 s, 100 bytes each
    (s,) = t.flows()
    assert s.packets == 100 and s.bytes == 10000
    assert s.pps == pytest.approx(10.0, abs=0.5) and s.bps == pytest.approx(8000, abs=400)
    (later,) = t.flows(now=30.0)                                # nothing in the last 2 s before t=30
    assert later.pps == 0.0 and later.bps == 0.0 and later.packets == 100


def test_rates_are_exact_with_out_of_order_timestamps():
    ordered, shuffled = FlowTable(), FlowTable()
    times = [i * 0.37 for i in range(40)]
    ordered.add_many([_frame(x) for x in times])
    shuffled.add_many([_frame(x) for x in reversed(times)])
    assert ordered.flows() == shuffled.flows()


def test_per_vni_totals_and_top_talkers():
    t = FlowTable()
    t.add_many([_frame(0, length=10), _frame(0, dst="10.0.0.9", length=20), _frame(0, vni=300, src="10.1.0.1",
                length=500), _frame(0, src="10.0.0.7", length=5)])
    assert [(s.vni, s.packets, s.bytes, s.inner_src, s.proto) for s in t.vni_totals()] == \
           [(300, 1, 500, "*", "*"), (256, 3, 35, "*", "*")]
    assert [(s.vni, s.inner_src, s.bytes, s.inner_dst) for s in t.top_talkers(2)] == \
           [(300, "10.1.0.1", 500, "*"), (256, "10.0.0.2", 30, "*")]


def test_names_are_applied_to_flow_stats():
    names = Names(networks={256: "demo"}, containers={"10.0.0.2": "c1@node1", "10.0.0.3": "c2@node2"})
    t = FlowTable()
    t.add(_frame(0))
    (s,) = t.flows(names)
    assert (s.network, s.src_name, s.dst_name) == ("demo", "c1@node1", "c2@node2")
    assert t.vni_totals(names)[0].network == "demo"


def test_malformed_and_not_vxlan_frames_count_as_flows_of_their_own():
    dec, t = VxlanDecoder(), FlowTable()
    t.add_many(dec.decode(r) for r in mixed_frames())
    protos: dict[str, int] = {}
    for s in t.flows():                       # keyed by what was decoded before the fault (e.g. the VNI)
        protos[s.proto] = protos.get(s.proto, 0) + s.packets
    assert protos["MALFORMED"] == 7 and protos["NOT-VXLAN"] == 4
    assert (t.counts()["malformed"], t.counts()["not_vxlan"]) == (7, 4)
    assert sum(s.packets for s in t.flows()) == len(mixed_frames())


def test_bad_window_is_refused():
    with pytest.raises(ValueError):
        FlowTable(window=0)


# --- the batch path equals the per-frame path ---------------------------------------------------------

def _per_frame(path, port=4789) -> FlowTable:
    t = FlowTable()
    t.add_many(read_pcap_frames(path, VxlanDecoder(port)))
    return t


def _same(batch: FlowTable, ref: FlowTable) -> None:
    assert batch.counts() == ref.counts()
    assert batch.flows() == ref.flows()
    assert batch.vni_totals() == ref.vni_totals() and batch.top_talkers(5) == ref.top_talkers(5)


@pytest.mark.parametrize("chunk", [1 << 20, 4096, 1500], ids=["one-batch", "many-batches", "tiny-chunks"])
def test_batch_flows_equal_per_frame_flows_on_a_mixed_pcap(tmp_path, chunk):
    path = tmp_path / "mixed.pcap"
    write_mixed_pcap(path, repeat=30, step=0.013)
    batch, truncated = flows_from_pcap(path, chunk=chunk)
    assert truncated is None
    _same(batch, _per_frame(path))
    assert batch.counts()["malformed"] == 7 * 30 and batch.counts()["not_vxlan"] == 4 * 30
    assert any(s.pps > 0 for s in batch.flows())


def test_batch_flows_on_port_8472_big_endian_nsec_and_a_cut_tail(tmp_path):
    path = tmp_path / "be.pcap"
    frames = [vxlan(inner_frame(n), vni=5000 + i, port=8472) for i, n in enumerate(["icmp", "tcp6", "arp", "udp"])]
    out = [struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for i in range(200):
        f = frames[i % 4]
        out.append(struct.pack(">IIII", 100 + i // 50, (i * 7919) % 10**9, len(f), len(f)) + f)
    path.write_bytes(b"".join(out)[:-9])
    batch, truncated = flows_from_pcap(path, port=8472)
    assert "last record cut short" in truncated
    _same(batch, _per_frame(path, 8472))
    assert {s.vni for s in batch.flows()} == {5000, 5001, 5002, 5003} and batch.frames == 199


def test_batch_grows_its_buffer_for_a_record_larger_than_a_chunk(tmp_path):
    path = tmp_path / "big.pcap"
    with PcapWriter(path) as w:
        w.write(1.0, vxlan(inner_frame("udp") / (b"x" * 9000)))
        w.write(2.0, vxlan(inner_frame("icmp")))
    batch, _ = flows_from_pcap(path, chunk=1024)
    _same(batch, _per_frame(path))


garbled = st.lists(st.tuples(st.sampled_from(mixed_frames()), st.integers(0, 130),
                             st.lists(st.tuples(st.integers(0, 129), st.integers(0, 255)), max_size=4),
                             st.floats(0, 5)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(garbled)
def test_batch_equals_per_frame_on_garbled_frames(tmp_path, frames):
    path = tmp_path / "fuzz.pcap"
    with PcapWriter(path, replace=True) as w:     # hypothesis reuses tmp_path: each example replaces the file
        for seed, cut, edits, ts in frames:
            raw = bytearray(seed[:cut] if cut else seed)
            for pos, val in edits:
                if pos < len(raw):
                    raw[pos] = val
            w.write(1000 + ts, bytes(raw))
    batch, _ = flows_from_pcap(path, chunk=512)
    _same(batch, _per_frame(path))


def test_flow_stat_is_the_shared_model():
    t = FlowTable()
    t.add(_frame(0))
    assert isinstance(t.flows()[0], FlowStat)


# --- the record walker: many chains at once, exact whatever its guesses ---------------------------------

def _naive_walk(buf: bytes, endian: str) -> tuple[list[int], int]:
    starts, off = [], 0
    while off + 16 <= len(buf):
        end = off + 16 + struct.unpack_from(endian + "I", buf, off + 8)[0]
        if end > len(buf):
            break
        starts.append(off)
        off = end
    return starts, off


def _records(endian: str, sizes: list[int], fakes: bool) -> bytes:
    """Records of the given sizes; with ``fakes``, each payload starts with something that looks like a
    record header (plausible time and lengths) but is not one: the guesses go wrong."""
    out = []
    for i, c in enumerate(sizes):
        body = bytes([c % 256]) * c
        if fakes and c >= 16:
            body = (struct.pack(endian + "IIII", 1, 3, c // 3, c // 3) + body)[:c]
        out.append(struct.pack(endian + "IIII", 1, i % 1000, c, c) + body)
    return b"".join(out)


def _small_walker(endian: str, segment: int):
    from core.capture.records import _Walker
    walker = _Walker(endian, "t")
    walker.SEGMENT, walker.WINDOW = segment, segment // 2       # many chains even on a small buffer
    return walker


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=300), endian=st.sampled_from("<>"),
       cut=st.integers(0, 40), segment=st.sampled_from([64, 128, 512]), fakes=st.booleans())
def test_chain_walk_finds_exactly_the_records(sizes, endian, cut, segment, fakes):
    recs = _records(endian, sizes, fakes)
    buf = bytearray(recs[:len(recs) - cut]) + bytearray(64)     # zero padding after the end, as a chunk has
    starts, used = _small_walker(endian, segment).walk(buf, len(buf) - 64)
    assert (starts.tolist(), used) == _naive_walk(bytes(buf[:len(buf) - 64]), endian)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 200), min_size=20, max_size=200), endian=st.sampled_from("<>"),
       offsets=st.lists(st.integers(-1, 63), min_size=200, max_size=200))
def test_chain_walk_is_exact_whatever_the_guesses(sizes, endian, offsets):
    import numpy as np
    recs = _records(endian, sizes, False)
    buf = bytearray(recs) + bytearray(64)
    walker = _small_walker(endian, 128)

    def guesses(arr, u32, start, first, count, n):                # anywhere in each segment's window
        return np.array([-1 if o < 0 else first + j * 128 + o for j, o in zip(range(count), offsets * 50)],
                        dtype=np.int64)
    walker._seeds = guesses
    starts, used = walker.walk(buf, len(recs))
    assert (starts.tolist(), used) == _naive_walk(recs, endian)


def test_chain_walk_stops_at_a_corrupt_record_with_the_same_error():
    from core.errors import CaptureError
    recs = bytearray(_records("<", [100] * 300, False))
    at = 200 * 116
    struct.pack_into("<I", recs, at + 8, 20 << 20)                 # claims 20 MB captured
    buf = recs + bytearray(64)
    with pytest.raises(CaptureError, match=f"record at byte {at + 24} claims {20 << 20} captured bytes"):
        _small_walker("<", 256).walk(buf, len(recs), 0, 24)


def test_snapped_capture_flows_equal_per_frame(tmp_path):
    path = tmp_path / "s128.pcap"
    frames = [vxlan(inner_frame("icmp") / (b"p" * 100)), vxlan(inner_frame("tcp")), vxlan(inner_frame("arp"))]
    with PcapWriter(path, snaplen=128) as w:
        for i in range(3000):
            w.write(i * 0.001, frames[0] if i % 50 else frames[1 + (i // 50) % 2])
    batch, _ = flows_from_pcap(path)
    _same(batch, _per_frame(path))
    assert batch.frames == 3000


@pytest.mark.parametrize("big", [False, True], ids=["packed", "too-wide-to-pack"])
def test_flow_order_is_the_six_key_lexsort(big):
    import numpy as np

    from core.capture.flowagg import _flow_order
    rng = np.random.default_rng(3)
    n = 5000
    minor = np.unique(rng.integers(0, 1 << 20, size=(n, 4)), axis=0)       # flow keys are distinct
    m = len(minor)
    vkey, srank, drank, prank = minor[:, 0] - 1, minor[:, 1], minor[:, 2], minor[:, 3]
    if big:
        srank = srank << 40                                                  # 63 bits are not enough
    nbytes, packets = rng.integers(0, 4, m) * 100, rng.integers(1, 3, m)     # many ties on the numbers
    got = _flow_order(nbytes, packets, vkey, srank, drank, prank)
    assert (got == np.lexsort((prank, drank, srank, vkey, -packets, -nbytes))).all()


@pytest.mark.parametrize("guess", ["none", "all-wrong", "right"])
def test_chain_walk_with_no_or_only_wrong_guesses_is_still_exact(guess):
    import numpy as np
    sizes = [(i * 37) % 200 for i in range(3000)]
    recs = _records("<", sizes, True)
    buf = bytearray(recs) + bytearray(64)
    walker = _small_walker("<", 512)
    if guess != "right":
        def guesses(arr, u32, start, first, count, n):
            at = first + 512 * np.arange(count)
            return np.full(count, -1, dtype=np.int64) if guess == "none" else at + 1   # +1: never a start
        walker._seeds = guesses
    starts, used = walker.walk(buf, len(recs))
    assert (starts.tolist(), used) == _naive_walk(recs, "<")
