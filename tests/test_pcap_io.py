"""pcap in and out: round trip, both byte orders and resolutions, tcpdump re-reading what we write,
the incremental stream parser on arbitrary chunks, and clear errors for what we do not read."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.capture.decode import VxlanDecoder
from core.capture.pcap import PcapFileReader, PcapStreamParser, PcapWriter, iter_pcap, read_pcap_frames, write_pcap
from core.errors import CaptureError
from tests.vxlan_frames import inner_frame, mixed_frames, vxlan, write_mixed_pcap

FRAMES = mixed_frames()


def _classic(records, endian="<", nsec=False, linktype=1, snaplen=65535) -> bytes:
    """A pcap built by hand, so the reader is not only tested against our own writer."""
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, wire in records:
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), wire) + data)
    return b"".join(out)


def test_round_trip_keeps_bytes_times_and_wire_lengths(tmp_path):
    path = tmp_path / "rt.pcap"
    dec = VxlanDecoder()
    frames = [dec.decode(r, 1_700_000_000 + i * 0.123457, len(r) + i) for i, r in enumerate(FRAMES)]
    assert write_pcap(path, frames) == len(frames)
    back = list(read_pcap_frames(path))
    assert [(f.raw, f.ts, f.wire_len, f.vni, f.inner_src, f.proto) for f in back] == \
           [(f.raw, round(f.ts, 6), f.wire_len, f.vni, f.inner_src, f.proto) for f in frames]


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nsec", [False, True], ids=["usec", "nsec"])
def test_reads_both_byte_orders_and_resolutions(tmp_path, endian, nsec):
    raw = vxlan(inner_frame("icmp"), vni=999)
    frac = 123456789 if nsec else 123456
    path = tmp_path / "x.pcap"
    path.write_bytes(_classic([(1000, frac, raw, len(raw)), (1001, 0, raw[:60], len(raw))], endian, nsec))
    recs = list(iter_pcap(path))
    assert recs[0] == (1000 + frac / (1e9 if nsec else 1e6), len(raw), len(raw), raw)
    assert recs[1] == (1001.0, 60, len(raw), raw[:60])
    assert [f.vni for f in read_pcap_frames(path)] == [999, 999]


def test_tcpdump_reads_the_file_we_write_and_sees_the_vxlan_frames(tmp_path):
    path = tmp_path / "w.pcap"
    with PcapWriter(path) as w:
        for i, raw in enumerate(FRAMES[:6]):
            w.write(1_700_000_000 + i, raw)
    assert shutil.which("tcpdump"), "tcpdump is needed (the Makefile's deps install it)"
    out = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()                      # tcpdump prints the outer, then the inner line
    outer = [ln for ln in lines if "VXLAN" in ln]
    assert len(outer) == 6
    assert "IP 198.18.0.1.40000 > 198.18.0.2.4789: VXLAN, flags [I] (0x08), vni 256" in outer[0]
    assert lines[1].startswith("IP 10.0.0.2 > 10.0.0.3: ICMP echo request")
    assert "2001:db8::1.40000 > 2001:db8::2.4789: VXLAN, flags [I] (0x08), vni 4097" in outer[2]


def test_writer_respects_snaplen_and_keeps_the_wire_length(tmp_path):
    path = tmp_path / "snap.pcap"
    raw = vxlan(inner_frame("udp"))
    with PcapWriter(path, snaplen=64) as w:
        w.write(5.5, raw)
    (rec,) = list(iter_pcap(path))
    assert rec == (5.5, 64, len(raw), raw[:64])


def test_writer_to_an_open_file_and_ts_rounding_carries_into_seconds(tmp_path):
    path = tmp_path / "fh.pcap"
    with open(path, "wb") as fh:
        w = PcapWriter(fh)
        w.write(9.9999996, b"\x00" * 14)
        w.close()
    assert list(iter_pcap(path))[0][0] == 10.0


def test_truncated_last_record_is_reported_not_raised(tmp_path):
    path = tmp_path / "cut.pcap"
    write_mixed_pcap(path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    reader = PcapFileReader(path)
    recs = list(reader)
    assert len(recs) == len(FRAMES) - 1
    assert "last record cut short" in reader.truncated and str(path) in reader.truncated


def test_file_of_only_a_header_has_no_records(tmp_path):
    path = tmp_path / "empty.pcap"
    write_pcap(path, [])
    reader = PcapFileReader(path)
    assert list(reader) == [] and reader.truncated is None and reader.header.linktype == 1


@pytest.mark.parametrize("content,expect", [
    (b"", "is not a pcap or pcapng file (empty"),
    (b"\xd4\xc3\xb2", "is not a pcap or pcapng file (only 3 bytes"),
    (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "is not a pcapng file (section header byte-order magic 0x00000000)"),
    (b"GIF89a" + b"\x00" * 40, "is not a pcap or pcapng file (magic 0x47494638)"),
    (_classic([], linktype=113), "link type 113 (Linux cooked (SLL, from `-i any`))"),
    (_classic([], linktype=101), "link type 101 (raw IP)"),
])
def test_files_we_do_not_read_give_a_clear_capture_error(tmp_path, content, expect):
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as e:
        list(iter_pcap(path))
    assert str(e.value).startswith(str(path) + ": ") and expect in str(e.value)


def test_missing_directory_and_corrupt_files(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        list(iter_pcap(tmp_path / "nope.pcap"))
    with pytest.raises(CaptureError, match="is a directory"):
        list(iter_pcap(tmp_path))
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(_classic([]) + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 10) + b"x" * 100)
    with pytest.raises(CaptureError, match="record at byte 24 claims 2147483647 captured bytes"):
        list(iter_pcap(bad))


def test_writing_where_we_cannot_is_an_error_naming_the_path(tmp_path):
    from core.files import FileWriteError
    with pytest.raises(FileWriteError, match="dir.pcap: cannot write"):
        PcapWriter(tmp_path / "no" / "such" / "dir.pcap")


# --- the stream parser (tcpdump -w - over SSH) ----------------------------------------------------------

STREAM = _classic([(i, i * 10, r, len(r) + 3) for i, r in enumerate(FRAMES)])
EXPECTED = [(i + i * 10 / 1e6, len(r), len(r) + 3, r) for i, r in enumerate(FRAMES)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 400), min_size=1, max_size=60))
def test_stream_parser_yields_the_same_records_whatever_the_chunking(sizes):
    p = PcapStreamParser("node1")
    got, pos, i = [], 0, 0
    while pos < len(STREAM):
        n = sizes[i % len(sizes)]
        got += p.feed(STREAM[pos:pos + n])
        pos, i = pos + n, i + 1
    assert got == EXPECTED
    assert p.close() is None and p.records == len(FRAMES) and p.pending() == 0


def test_stream_parser_one_byte_at_a_time_and_a_cut_tail():
    p = PcapStreamParser("node1: capture stream")
    got = []
    for b in STREAM[:-5]:
        got += p.feed(bytes([b]))
    assert got == EXPECTED[:-1]
    note = p.close()
    assert note.startswith("node1: capture stream: last record cut short") and p.truncated == note


def test_stream_parser_refuses_a_bad_magic_as_soon_as_it_sees_it():
    p = PcapStreamParser("node2: capture stream")
    with pytest.raises(CaptureError, match="node2: capture stream: is not a pcap file"):
        p.feed(b"tcpdump: eth9: No such device")


def test_stream_parser_close_without_a_header_is_an_error():
    p = PcapStreamParser("node3")
    p.feed(STREAM[:10])
    with pytest.raises(CaptureError, match="node3: is not a pcap file"):
        p.close()


def test_committed_fixture_decodes_as_generated():
    """tests/fixtures/vxlan_mixed.pcap (from `python -m tests.vxlan_frames`): every kind, counted."""
    from pathlib import Path
    path = Path(__file__).parent / "fixtures" / "vxlan_mixed.pcap"
    dec = VxlanDecoder()
    frames = [dec.decode(r[3], r[0], r[2]) for r in iter_pcap(path)]
    assert [f.raw for f in frames] == FRAMES
    assert dec.counts() == {"frames": len(FRAMES), "malformed": 7, "not_vxlan": 4}
    assert {f.vni for f in frames if f.error is None} == {256, 257, 4097}
