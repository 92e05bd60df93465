"""pcapng and gzip in, pcapng out; the split (two-process) file path; the numpy --json lines; and
tshark as an independent reader and dissector of the same files (tshark is in the Makefile's deps)."""
from __future__ import annotations

import gzip
import json
import random
import shutil
import struct
import subprocess

import pytest

from core.capture.batch import flows_from_pcap
from core.capture.decode import VxlanDecoder
from core.capture.flowagg import FlowCounter
from core.capture.flows import FlowTable
from core.capture.format import flow_json, frame_json
from core.capture.lines import file_json_lines
from core.capture.pcap import PcapFileReader, PcapngWriter, iter_pcap, open_writer, read_pcap_frames, write_pcap
from core.capture.records import CaptureFile, parse_tsresol
from core.errors import CaptureError
from tests.vxlan_frames import INNER_PAYLOADS, inner_frame, mixed_frames, vxlan, write_mixed_pcap

FRAMES = mixed_frames()
TSHARK = shutil.which("tshark")


# --- hand-built pcapng ----------------------------------------------------------------------------------

def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def _block(e: str, typ: int, body: bytes) -> bytes:
    n = 12 + len(body) + (-len(body) % 4)
    return struct.pack(e + "II", typ, n) + body + bytes(-len(body) % 4) + struct.pack(e + "I", n)


def shb(e: str) -> bytes:
    return _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(e, 0, b""))


def idb(e: str, linktype: int = 1, snaplen: int = 0, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += _opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += _opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += _opt(e, 0, b"")
    return _block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts)


def epb(e: str, iface: int, ticks: int, data: bytes, wire: int | None = None) -> bytes:
    return _block(e, 6, struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                    len(data) if wire is None else wire) + data)


def spb(e: str, data: bytes, wire: int | None = None) -> bytes:
    return _block(e, 3, struct.pack(e + "I", len(data) if wire is None else wire) + data)


def unknown(e: str) -> bytes:
    return _block(e, 0x40000BAD, b"custom block, skipped")


@pytest.mark.parametrize("e", ["<", ">"], ids=["little-endian", "big-endian"])
def test_hand_built_pcapng_with_several_interfaces_resolutions_and_skipped_blocks(tmp_path, e):
    a, b, c = FRAMES[0], FRAMES[4], FRAMES[8]
    parts = [shb(e), idb(e), unknown(e), idb(e, tsresol=9), idb(e, tsresol=0x80 | 20, tsoffset=1000),
             epb(e, 0, 1_700_000_000_123_456, a),
             _block(e, 5, struct.pack(e + "III", 1, 0, 0)),                  # interface statistics: skipped
             epb(e, 1, 1_700_000_000_123_456_789, b, wire=len(b) + 100),
             epb(e, 2, (5 << 20) + (1 << 19), c),                             # 5.5 s after the offset
             spb(e, a[:60], wire=len(a)),
             unknown(e)]
    path = tmp_path / "hand.pcapng"
    path.write_bytes(b"".join(parts))
    recs = list(iter_pcap(path))
    assert recs == [(1_700_000_000 + 123456 / 1e6, len(a), len(a), a),
                    (1_700_000_000 + 123456789 / 1e9, len(b), len(b) + 100, b),
                    (1005 + 0.5, len(c), len(c), c),
                    (0.0, 60, len(a), a[:60])]
    ref = FlowTable()
    ref.add_many(read_pcap_frames(path))
    got, truncated = flows_from_pcap(path, chunk=64)
    assert truncated is None and got.flows() == ref.flows() and got.counts() == ref.counts()


def test_two_sections_of_different_byte_orders_each_with_their_interfaces(tmp_path):
    a, b = FRAMES[0], FRAMES[3]
    path = tmp_path / "two.pcapng"
    path.write_bytes(shb("<") + idb("<", tsresol=3) + epb("<", 0, 5_000, a)
                     + shb(">") + idb(">") + idb(">", tsresol=9) + epb(">", 1, 7_000_000_000, b))
    assert [(r[0], r[3]) for r in iter_pcap(path)] == [(5.0, a), (7.0, b)]


def test_tsresol_values():
    assert (parse_tsresol(6), parse_tsresol(9), parse_tsresol(0x80 | 10)) == (10 ** 6, 10 ** 9, 1024)


@pytest.mark.parametrize("content,expect", [
    (shb("<") + idb("<", linktype=113) + epb("<", 0, 1, FRAMES[0]), "link type 113"),
    (shb("<") + epb("<", 0, 1, FRAMES[0]), "names interface 0 of 0 described"),
    (shb("<") + idb("<") + struct.pack("<II", 6, 14) + bytes(8), "has length 14"),
    (shb("<")[:8] + b"\xff\xff\xff\xff" + shb("<")[12:], "byte-order magic"),
])
def test_pcapng_faults_are_capture_errors_naming_the_file(tmp_path, content, expect):
    path = tmp_path / "bad.pcapng"
    path.write_bytes(content)
    for read in (lambda: list(iter_pcap(path)), lambda: flows_from_pcap(path)):
        with pytest.raises(CaptureError) as e:
            read()
        assert str(e.value).startswith(str(path) + ": ") and expect in str(e.value)


def test_a_pcapng_cut_short_says_so(tmp_path):
    path = tmp_path / "cut.pcapng"
    path.write_bytes((shb("<") + idb("<") + epb("<", 0, 1, FRAMES[0]) + epb("<", 0, 2, FRAMES[1]))[:-7])
    reader = PcapFileReader(path)
    assert len(list(reader)) == 1 and "last record cut short" in reader.truncated


# --- gzip, and writing pcapng --------------------------------------------------------------------------

def test_gzip_files_of_either_format_read_the_same(tmp_path):
    plain = tmp_path / "m.pcap"
    write_mixed_pcap(plain, repeat=3)
    ng = tmp_path / "m.pcapng"
    write_pcap(ng, read_pcap_frames(plain))
    for src in (plain, ng):
        gz = tmp_path / (src.name + ".gz")
        gz.write_bytes(gzip.compress(src.read_bytes()))
        assert list(iter_pcap(gz)) == list(iter_pcap(plain))
        assert flows_from_pcap(gz)[0].flows() == flows_from_pcap(plain)[0].flows()


def test_write_pcapng_by_extension_round_trips(tmp_path):
    frames = [VxlanDecoder().decode(r, 1_700_000_000.25 + i, len(r) + 3) for i, r in enumerate(FRAMES)]
    out = tmp_path / "o.pcapng"
    probe = open_writer(tmp_path / "probe.pcapng")
    assert isinstance(probe, PcapngWriter)
    probe.abort()                                   # a writer creates its file (0600, never over one): drop it
    assert not (tmp_path / "probe.pcapng").exists()
    write_pcap(out, frames)
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert [(r[0], r[2], r[3]) for r in iter_pcap(out)] == [(f.ts, f.wire_len, f.raw) for f in frames]


# --- randomized: the numpy paths against the per-frame reference ----------------------------------------

def _random_pcap(path, n: int, seed: int, writer=open_writer) -> None:
    rnd = random.Random(seed)
    kinds = list(INNER_PAYLOADS)
    with writer(path) as w:
        ts = 1_700_000_000.0
        for _ in range(n):
            ts += rnd.random() * 0.05
            r = rnd.random()
            if r < 0.08:
                raw = rnd.choice(FRAMES)
                raw = raw[:rnd.randrange(1, len(raw) + 1)]                   # cut anywhere
            elif r < 0.12:
                raw = bytearray(rnd.choice(FRAMES))
                raw[rnd.randrange(len(raw))] = rnd.randrange(256)             # one byte garbled
                raw = bytes(raw)
            else:
                raw = vxlan(inner_frame(rnd.choice(kinds), tagged=rnd.random() < 0.3), vni=rnd.choice([1, 256, 70000]),
                            outer_tags=rnd.choice([0, 0, 1, 2]), outer_v6=rnd.random() < 0.2,
                            sport=rnd.randrange(1024, 65536))
            w.write(ts, raw, len(raw) + rnd.choice([0, 0, 4]))


@pytest.mark.parametrize("segment", [None, 256], ids=["one-chain", "many-chains"])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("ext", ["pcap", "pcapng"])
def test_numpy_flows_and_json_lines_equal_the_per_frame_path_on_random_files(tmp_path, monkeypatch, seed, ext,
                                                                            segment):
    """Mixed files (cut and garbled frames, VLAN and QinQ, outer and inner IPv6, ARP, several ports):
    the numpy flows and --json lines equal the per-frame decoder's, with the record walk in one chain
    or in many (small segments: guesses right and wrong in every chunk)."""
    path = tmp_path / f"r.{ext}"
    _random_pcap(path, 1500, seed)
    from core.capture import records
    default = records._ChainWalk.SEGMENT
    monkeypatch.setattr(records._ChainWalk, "SEGMENT", 1 << 40)   # the reference: the one-at-a-time walk
    dec, ref = VxlanDecoder(), FlowTable()
    frames = list(read_pcap_frames(path, dec))
    ref.add_many(frames)
    monkeypatch.setattr(records._ChainWalk, "SEGMENT", segment or default)
    monkeypatch.setattr(records._ChainWalk, "WINDOW", (segment or default) // 16)
    got, _ = flows_from_pcap(path, chunk=4096)
    assert got.flows() == ref.flows() and got.counts() == ref.counts()
    assert got.columns().json_lines() == [json.dumps(flow_json(s)) + "\n" for s in ref.flows()]
    counter, lines = FlowCounter(), []
    with CaptureFile(path, chunk=4096) as cf:
        for chunk_lines in file_json_lines(cf.batches(), 4789, VxlanDecoder(), counter):
            lines += chunk_lines
    assert lines == [json.dumps(frame_json(f)) + "\n" for f in frames]
    assert counter.flows() == ref.flows()


@pytest.mark.parametrize("segment", [64, 256, 4096])
def test_many_chain_walk_reads_pcapng_and_pcap_exactly(tmp_path, monkeypatch, segment):
    """The walker's chains (small segments: many per chunk, guesses right and wrong) give the records the
    one-at-a-time walk gives, in both formats, a second section and an interface added midway included."""
    from core.capture import records
    plain, ng = tmp_path / "r.pcap", tmp_path / "r.pcapng"
    _random_pcap(plain, 1200, 5)
    _random_pcap(ng, 1200, 5)
    extra = shb(">") + idb(">") + idb(">", tsresol=9) + epb(">", 1, 7_000_000_000, FRAMES[2]) + unknown(">")
    two = tmp_path / "two.pcapng"
    two.write_bytes(ng.read_bytes() + extra + idb(">") + epb(">", 2, 8_000_000, FRAMES[3]))
    monkeypatch.setattr(records._ChainWalk, "SEGMENT", 1 << 40)          # one chain: the one-at-a-time walk
    want = {p: list(iter_pcap(p)) for p in (plain, ng, two)}
    monkeypatch.setattr(records._ChainWalk, "SEGMENT", segment)
    monkeypatch.setattr(records._ChainWalk, "WINDOW", segment // 2)
    for p in (plain, ng, two):
        for chunk in (1 << 20, 8192):
            with CaptureFile(p, chunk) as cf:
                got = list(records.iter_file_records(cf))
            assert got == want[p]
    assert want[ng] == want[plain] and want[two][-2:] == [(7.0, len(FRAMES[2]), len(FRAMES[2]), FRAMES[2]),
                                                           (8.0, len(FRAMES[3]), len(FRAMES[3]), FRAMES[3])]


def test_a_big_file_split_between_two_processes_counts_exactly(tmp_path, monkeypatch):
    path = tmp_path / "big.pcap"
    _random_pcap(path, 3000, 9)
    ref = flows_from_pcap(path, workers=1)[0]
    from core.capture import batch
    splits: list[int] = []
    real_split = batch._count_split
    monkeypatch.setattr(batch, "_count_split", lambda *a, **k: (splits.append(1), real_split(*a, **k))[1])
    split = flows_from_pcap(path, workers=2, split_min=1, chunk=8192)[0]
    assert splits == [1]
    assert split.flows() == ref.flows() and split.counts() == ref.counts()
    # a wrong guess of the boundary: the first half's walk does not end there, its result is dropped
    from core.capture import records
    real = records._Walker.find_boundary
    monkeypatch.setattr(records._Walker, "find_boundary", lambda self, *a, **k: real(self, *a, **k) + 1)
    wrong = flows_from_pcap(path, workers=2, split_min=1, chunk=8192)[0]
    assert wrong.flows() == ref.flows() and wrong.counts() == ref.counts()


# --- tshark: another reader and another dissector of the same files ------------------------------------

def _tshark(*args: str) -> str:
    assert TSHARK, "tshark is part of the Makefile's deps (apt-get install tshark)"
    return subprocess.run([TSHARK, *args], check=True, capture_output=True, text=True, timeout=120).stdout


def test_files_written_by_tshark_as_pcapng_read_like_the_classic_original(tmp_path):
    plain = tmp_path / "m.pcap"
    _random_pcap(plain, 400, 4)
    ng = tmp_path / "m.pcapng"
    _tshark("-r", str(plain), "-F", "pcapng", "-w", str(ng))
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert list(iter_pcap(ng)) == list(iter_pcap(plain))
    assert flows_from_pcap(ng)[0].flows() == flows_from_pcap(plain)[0].flows()
    ed = tmp_path / "e.pcapng"                                      # and editcap's writer
    subprocess.run(["editcap", "-F", "pcapng", str(plain), str(ed)], check=True, timeout=60)
    assert list(iter_pcap(ed)) == list(iter_pcap(plain))


def test_our_pcapng_and_pcap_are_read_by_tshark_with_the_same_fields_we_decode(tmp_path):
    frames = [VxlanDecoder().decode(vxlan(inner_frame(k), vni=300 + i, outer_tags=i % 3, outer_v6=i % 4 == 3,
                                          sport=50000 + i), 1_700_000_000 + i * 0.5)
              for i, k in enumerate(["icmp", "tcp", "udp", "tcp6", "arp", "icmp", "udp", "tcp"])]
    for name in ("ours.pcap", "ours.pcapng"):
        path = tmp_path / name
        write_pcap(path, frames)
        rows = _tshark("-n", "-r", str(path), "-d", "udp.port==4789,vxlan", "-T", "fields", "-E", "separator=|",
                       "-e", "frame.time_epoch", "-e", "vxlan.vni", "-e", "udp.srcport", "-e", "frame.len",
                       "-e", "eth.src").splitlines()
        assert len(rows) == len(frames)
        for row, f in zip(rows, frames):
            ts, vni, sports, flen, macs = row.split("|")
            assert abs(float(ts) - f.ts) < 1e-6 and int(vni) == f.vni and int(flen) == f.wire_len
            assert int(sports.split(",")[0]) == f.outer_sport and f.inner_src_mac in macs.split(",")


def test_decoded_fields_agree_with_tsharks_vxlan_dissector(tmp_path):
    path = tmp_path / "r.pcap"
    _random_pcap(path, 600, 5)
    rows = _tshark("-n", "-r", str(path), "-d", "udp.port==4789,vxlan", "-T", "fields", "-E", "separator=|",
                   "-e", "vxlan.vni", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
                   "-e", "_ws.malformed", "-e", "_ws.expert").splitlines()
    frames = list(read_pcap_frames(path))
    assert len(rows) == len(frames)
    checked = 0
    for row, f in zip(rows, frames):
        vni, ip_src, ip_dst, ip6_src, ip6_dst, malformed, _expert = row.split("|")
        if f.error is not None or not vni or malformed or "," in vni:
            continue
        fam = {4: (ip_src.split(","), ip_dst.split(",")), 6: (ip6_src.split(","), ip6_dst.split(","))}
        assert int(vni) == f.vni
        osrc, odst = fam[6 if ":" in f.outer_src else 4]
        assert (osrc[0], odst[0]) == (f.outer_src, f.outer_dst)          # the outer header: the first one
        if f.proto != "ARP" and not f.proto.startswith("ETH/"):
            isrc, idst = fam[6 if ":" in f.inner_src else 4]
            assert (isrc[-1], idst[-1]) == (f.inner_src, f.inner_dst)    # the inner one: the last one
        checked += 1
    assert checked > 400


def test_json_lines_with_names_equal_the_per_frame_path(tmp_path):
    from core.model import Names
    path = tmp_path / "m.pcap"
    write_mixed_pcap(path, repeat=4)
    names = Names(networks={256: "demo", 4097: 'x"\x1b[31m'}, nodes={"198.18.0.1": "node1"},
                  containers={"10.0.0.3": "c1@node2", "02:42:0a:00:00:02": "m@node1", "fd00::5": "v6@n"})
    frames = list(read_pcap_frames(path))
    lines: list[str] = []
    with CaptureFile(path) as cf:
        for chunk_lines in file_json_lines(cf.batches(), 4789, VxlanDecoder(), FlowCounter(), names):
            lines += chunk_lines
    assert lines == [json.dumps(frame_json(f, names)) + "\n" for f in frames]
    got = flows_from_pcap(path)[0]
    assert got.columns().json_lines(names) == [json.dumps(flow_json(s)) + "\n" for s in got.flows(names)]


def test_json_lines_of_a_file_split_between_two_processes_keep_the_file_order(tmp_path, monkeypatch):
    from core.capture import lines as lines_mod
    path = tmp_path / "big.pcap"
    _random_pcap(path, 3000, 11)
    frames = list(read_pcap_frames(path))
    splits: list[int] = []
    real = lines_mod._count_split
    monkeypatch.setattr(lines_mod, "_count_split", lambda *a, **k: (splits.append(1), real(*a, **k))[1])
    for workers in (1, 2):
        out = tmp_path / f"out{workers}.json"
        counter = FlowCounter()
        with open(out, "w") as fh:
            assert lines_mod.write_file_json(str(path), 4789, VxlanDecoder(), counter, fh, workers=workers,
                                             split_min=1, chunk=8192) is None
        assert len(splits) == workers - 1
        assert out.read_text().splitlines() == [json.dumps(frame_json(f)) for f in frames]
        assert counter.counts()["frames"] == len(frames)
