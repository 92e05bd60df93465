"""The fast-path VXLAN decoder on crafted frames (every layer combination), its counts, its
configurable port, scapy's detail view, and fuzzing: truncated or garbled input never raises."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.capture.decode import LINUX_VXLAN_PORT, MALFORMED, NOT_VXLAN, VxlanDecoder
from core.capture.detail import frame_detail
from core.model import Frame, FrameDetail
from tests.vxlan_frames import INNER_MACS, INNER_PAYLOADS, OUTER4, OUTER6, inner_frame, mixed_frames, not_vxlan_frames, vxlan

ROOT = Path(__file__).resolve().parents[1]
OUTERS = [(0, False), (1, False), (2, False), (0, True), (1, True)]   # (VLAN tags, outer IPv6)


@pytest.mark.parametrize("outer_tags,outer_v6", OUTERS)
@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "inner-8021q"])
@pytest.mark.parametrize("name", list(INNER_PAYLOADS))
def test_every_layer_combination_decodes_vni_addresses_proto_and_info(name, tagged, outer_tags, outer_v6):
    _layer, proto, src, dst, info = INNER_PAYLOADS[name]
    inner = bytes(inner_frame(name, tagged))
    raw = vxlan(inner_frame(name, tagged), vni=4097, outer_tags=outer_tags, outer_v6=outer_v6, sport=50000)
    f = VxlanDecoder().decode(raw, 12.5, None, "n1")
    assert f.error is None, f.error
    assert (f.ts, f.node, f.vni) == (12.5, "n1", 4097)
    assert (f.outer_src, f.outer_dst) == (OUTER6 if outer_v6 else OUTER4)
    assert (f.outer_sport, f.outer_dport) == (50000, 4789)
    assert (f.inner_src_mac, f.inner_dst_mac) == INNER_MACS
    assert (f.proto, f.inner_src, f.inner_dst, f.info) == (proto, src, dst, info)
    assert f.length == len(inner) and f.wire_len == len(raw) and f.raw == raw


def test_vni_range_and_wire_length_from_a_snapped_capture():
    raw = vxlan(inner_frame("udp"), vni=0xFFFFFF)
    f = VxlanDecoder().decode(raw[:90], 0.0, len(raw) + 100)
    assert f.vni == 0xFFFFFF and f.error is None
    assert f.wire_len == len(raw) + 100 and f.length == len(raw) + 100 - 50   # inner length from the wire length


def test_port_is_configurable_linux_8472():
    on_8472 = vxlan(inner_frame("icmp"), port=LINUX_VXLAN_PORT)
    dec = VxlanDecoder(LINUX_VXLAN_PORT)
    assert dec.decode(on_8472).proto == "ICMP"
    other = dec.decode(vxlan(inner_frame("icmp")))
    assert other.proto == NOT_VXLAN and "4789 is not the VXLAN port 8472" in other.error
    assert VxlanDecoder().decode(on_8472).proto == NOT_VXLAN
    with pytest.raises(ValueError):
        VxlanDecoder(0)


@pytest.mark.parametrize("cut,why", [(10, "outer Ethernet header cut short"), (30, "outer IPv4 header cut short"),
                                     (40, "outer UDP header cut short"), (45, "VXLAN header cut short"),
                                     (60, "inner Ethernet header cut short"), (70, "inner IPv4 header cut short"),
                                     (85, "inner ICMP header cut short")])
def test_truncated_frames_are_malformed_with_the_reason_and_counted(cut, why):
    dec = VxlanDecoder()
    f = dec.decode(vxlan(inner_frame("icmp"))[:cut])
    assert f.proto == MALFORMED and f.error.startswith(why)
    assert dec.counts() == {"frames": 1, "malformed": 1, "not_vxlan": 0}


def test_missing_i_flag_and_bad_headers_are_malformed():
    dec = VxlanDecoder()
    f = dec.decode(vxlan(inner_frame("icmp"), vni=300, flags=0))
    assert f.proto == MALFORMED and "I bit" in f.error and f.vni == 300 and f.outer_src == OUTER4[0]
    assert dec.decode(mixed_frames()[-5]).error.startswith("outer IPv4 header invalid")


def test_non_vxlan_frames_are_labelled_and_counted_apart():
    dec = VxlanDecoder()
    frames = [dec.decode(r) for r in not_vxlan_frames()]
    assert [f.proto for f in frames] == [NOT_VXLAN] * 4
    assert [f.error for f in frames] == ["outer IPv4 protocol TCP, not UDP", "UDP port 53 is not the VXLAN port 4789",
                                         "outer ethertype 0x0806 is not IP", "outer IPv6 next header TCP, not UDP"]
    assert frames[0].outer_src == OUTER4[0] and frames[0].length == frames[0].wire_len
    assert dec.counts() == {"frames": 4, "malformed": 0, "not_vxlan": 4}


def test_mixed_counts_add_up():
    dec = VxlanDecoder()
    frames = [dec.decode(r) for r in mixed_frames()]
    c = dec.counts()
    assert c["frames"] == len(frames)
    assert c["malformed"] == sum(f.proto == MALFORMED for f in frames) == 7
    assert c["not_vxlan"] == sum(f.proto == NOT_VXLAN for f in frames) == 4


def test_bytearray_and_memoryview_input_are_accepted():
    raw = vxlan(inner_frame("tcp"))
    assert VxlanDecoder().decode(bytearray(raw)).proto == "TCP"
    assert VxlanDecoder().decode(memoryview(raw)).proto == "TCP"


# --- fuzzing: nothing raises, every output is a Frame --------------------------------------------------

SEEDS = mixed_frames()


def _check(dec: VxlanDecoder, raw: bytes) -> Frame:
    f = dec.decode(raw, 1.0, None)
    assert dec.bugs == 0, f.error          # bad input is malformed or not VXLAN, never a decoder bug
    assert isinstance(f, Frame)
    assert (f.error is None) == (f.proto not in (MALFORMED, NOT_VXLAN))
    assert f.length >= 0 and f.wire_len >= len(raw)
    return f


def test_every_truncation_of_every_seed_never_raises():
    dec = VxlanDecoder()
    n = 0
    for seed in SEEDS:
        for cut in range(len(seed) + 1):
            _check(dec, seed[:cut])
            n += 1
    assert dec.frames == n and dec.malformed + dec.not_vxlan > 0 and dec.bugs == 0


def test_a_decoder_bug_is_counted_apart_from_malformed_traffic(monkeypatch):
    dec = VxlanDecoder()

    def broken(self, f, raw):
        raise IndexError("a bug")

    monkeypatch.setattr(VxlanDecoder, "_decode", broken)
    f = dec.decode(b"\x00" * 20, 1.0, None)
    assert (dec.bugs, dec.malformed, dec.frames) == (1, 0, 1)
    assert f.proto == MALFORMED and f.error == "decoder bug: IndexError: a bug"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), cut=st.integers(0, 200),
       edits=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=8))
def test_garbled_frames_never_raise(seed, cut, edits):
    raw = bytearray(seed[:max(cut, 0) or len(seed)])
    for pos, val in edits:
        if pos < len(raw):
            raw[pos] = val
    _check(VxlanDecoder(), bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([4789, 8472, 1]))
def test_random_bytes_never_raise(raw, port):
    _check(VxlanDecoder(port), raw)


# --- scapy detail ---------------------------------------------------------------------------------------

def test_detail_shows_every_layer_and_a_hexdump():
    raw = vxlan(inner_frame("tcp", tagged=True), vni=256, outer_tags=1)
    d = frame_detail(raw)
    assert isinstance(d, FrameDetail)
    for text in ("###[ Ethernet ]###", "802.1Q", "###[ IP ]###", "###[ UDP ]###", "###[ VXLAN ]###",
                 "vni       = 0x100", "###[ TCP ]###", "10.0.1.5", "dport     = http"):
        assert text in d.layers, text
    assert d.hexdump.startswith("0000  02 00 C6 12 00 02")
    assert len(d.hexdump.splitlines()) == (len(raw) + 15) // 16


def test_detail_binds_vxlan_to_the_configured_port():
    raw = vxlan(inner_frame("icmp"), vni=77, port=5555)
    assert "###[ VXLAN ]###" in frame_detail(raw, 5555).layers
    assert "vni       = 0x4d" in frame_detail(raw, 5555).layers


@pytest.mark.parametrize("raw", [b"", b"\x00" * 5, bytes(range(256)), mixed_frames()[-6][:47]])
def test_detail_of_garbage_still_returns_a_hexdump(raw):
    d = frame_detail(raw)
    assert isinstance(d.layers, str) and isinstance(d.hexdump, str)


def test_fast_path_and_cli_import_neither_scapy_nor_numpy():
    code = ("import sys, core.capture.decode, core.capture.pcap, core.capture.flows, core.capture.format, core.cli.capture\n"
            "print(sorted(m for m in ('scapy', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the one-unpack common shape gives exactly what the general path gives ---------------------------

COMMON_SEEDS = [vxlan(inner_frame(n), vni=v, sport=s) for n in ("icmp", "icmp-unreach", "tcp", "udp", "gre")
                for v, s in ((256, 1), (70000, 65535))]


def _general_only(raw: bytes, monkeypatch) -> Frame:
    import core.capture.decode as vd
    with monkeypatch.context() as m:
        m.setattr(vd, "COMMON_LEN", 1 << 30)
        return VxlanDecoder().decode(raw, 3.0, None, "n")


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.sampled_from(COMMON_SEEDS), cut=st.integers(80, 130),
       edits=st.lists(st.tuples(st.sampled_from([12, 13, 14, 20, 21, 23, 36, 37, 42, 62, 63, 64, 70, 71, 73, 84, 85,
                                                 97]), st.integers(0, 255)), max_size=3))
def test_common_shape_shortcut_equals_the_general_path(monkeypatch, seed, cut, edits):
    raw = bytearray(seed[:cut])
    for pos, val in edits:
        if pos < len(raw):
            raw[pos] = val
    raw = bytes(raw)
    assert VxlanDecoder().decode(raw, 3.0, None, "n") == _general_only(raw, monkeypatch)


def test_frame_field_order_the_decoder_relies_on():
    from dataclasses import fields
    assert [f.name for f in fields(Frame)][:16] == [
        "ts", "node", "raw", "wire_len", "outer_src", "outer_dst", "outer_sport", "outer_dport", "vni", "inner_src",
        "inner_dst", "inner_src_mac", "inner_dst_mac", "proto", "info", "length"]
