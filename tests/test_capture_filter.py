"""The capture filter: what each key matches, and clear errors naming the bad term."""
from __future__ import annotations

import pytest

from core.model import Frame
from tui.capture.filter import CaptureFilterError, parse_filter

NODES = ("docker-node1", "docker-node2")


def frame(**kw) -> Frame:
    base = dict(ts=0.0, node="docker-node1", raw=b"", wire_len=148, outer_src="198.18.0.1", outer_dst="198.18.0.2",
                vni=256, inner_src="10.0.0.2", inner_dst="10.0.0.3", inner_src_mac="02:42:0a:00:00:02",
                inner_dst_mac="02:42:0a:00:00:03", proto="ICMP", network="demo", src_name="c1@docker-node1",
                dst_name="c2@docker-node2", outer_src_name="docker-node1", outer_dst_name="docker-node2")
    base.update(kw)
    return Frame(**base)


def matches(text: str, f: Frame) -> bool:
    flt = parse_filter(text, NODES)
    assert flt is not None
    return flt(f)


def test_empty_filter_is_none():
    assert parse_filter("   ", NODES) is None


def test_the_example_from_the_issue():
    text = "vni=256 node=docker-node1 host=10.0.0.2 proto=icmp"
    assert matches(text, frame())
    assert not matches(text, frame(vni=257))
    assert not matches(text, frame(node="docker-node2"))
    assert not matches(text, frame(inner_src="10.0.0.9"))
    assert not matches(text, frame(proto="TCP"))


@pytest.mark.parametrize("text, expected", [
    ("vni=256,300", True), ("vni=250-260", True), ("vni=257-300", False), ("256", True), ("vni!=256", False),
    ("net=demo", True), ("network=web", False),
    ("host=c1", True), ("host=c2@docker-node2", True), ("host=docker-node2", True), ("host=198.18.0.1", True),
    ("host=02:42:0A:00:00:03", True), ("host=10.0.0.0/24", True), ("host=10.1.0.0/16", False),
    ("src=10.0.0.2", True), ("dst=10.0.0.2", False), ("src=c2", False), ("dst=c2", True),
    ("icmp", True), ("proto=tcp,icmp", True), ("proto=ICMP", True), ("proto!=icmp", False), ("udp", False),
    ("node=docker-node1,docker-node2", True),
])
def test_terms(text, expected):
    assert matches(text, frame()) is expected


def test_protocol_labels_of_the_decoder():
    assert matches("proto=icmp6", frame(proto="ICMPv6"))
    assert matches("proto=malformed", frame(proto="MALFORMED", vni=None))
    assert matches("proto=not-vxlan", frame(proto="NOT-VXLAN"))
    assert not matches("vni=256", frame(vni=None))


def test_normalised_text():
    flt = parse_filter("VNI=256  icmp  Host!=c1", NODES)
    assert flt is not None and flt.text == "vni=256 proto=icmp host!=c1"


@pytest.mark.parametrize("text, words", [
    ("vni=abc", ["vni=abc", "'abc' is not a number"]),
    ("vni=99999999", ["outside 0-16777215"]),
    ("vni=300-200", ["reversed"]),
    ("colour=red", ["unknown key 'colour'", "vni, net, node, host, src, dst, proto"]),
    ("proto=smtp", ["unknown protocol 'smtp'"]),
    ("node=docker-node9", ["node 'docker-node9' is not in the inventory", "docker-node1, docker-node2"]),
    ("host=10.0.0.0/99", ["not a subnet"]),
    ("vni=", ["no value after '='"]),
    ("hello", ["filter term 'hello'", "key=value"]),
])
def test_errors_name_the_term_and_why(text, words):
    with pytest.raises(CaptureFilterError) as err:
        parse_filter(f"proto=icmp {text}", NODES)
    for w in words:
        assert w in str(err.value)
    assert err.value.exit_code == 2


def test_node_names_are_not_checked_without_an_inventory():
    assert matches_any("node=anything")


def matches_any(text: str) -> bool:
    return parse_filter(text) is not None
