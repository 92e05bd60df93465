"""Live-capture parts that need no lab: the time-ordered merge, the node probe, naming, step 8's check."""
from __future__ import annotations

import asyncio

import pytest

from core.capture.merge import FrameMerger
from core.capture.names import apply_names, build_names, names_from_json, names_to_json
from core.capture.remote import _SECTION, parse_probe
from core.capture.verify import check_frames
from core.errors import CaptureError
from core.model import ContainerInfo, Frame, Inventory, NetworkInfo, NodeSpec


def _f(ts: float, node: str = "n1", **kw) -> Frame:
    return Frame(ts, node, b"", 100, **kw)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _drain(m: FrameMerger) -> list:
    out = []
    async for b in m.batches():
        out.append(b)
    return out


async def test_merger_releases_two_sources_in_time_order_up_to_the_watermark():
    clock = FakeClock()
    m = FrameMerger(2, window=0.1, clock=clock)
    m.add([_f(1.0, "a"), _f(1.2, "a"), _f(1.4, "a")], source="a")
    m._release()
    assert not m._ready                       # b has sent nothing yet: a's frames wait (at most the window)
    clock.now = 0.05
    m.add([_f(1.1, "b"), _f(1.3, "b")], source="b")
    m._release()                              # watermark = min(1.4, 1.3): everything up to 1.3 may go
    assert [(f.ts, f.node) for f in m._ready] == [(1.0, "a"), (1.1, "b"), (1.2, "a"), (1.3, "b")]
    m.add([_f(1.35, "b")], source="b")
    m._release()
    assert [f.ts for f in m._ready][-1] == 1.35 and m._held_count == 1
    clock.now = 0.2                           # b stays silent: a's 1.4 goes out after the window
    m._release()
    assert [f.ts for f in m._ready] == [1.0, 1.1, 1.2, 1.3, 1.35, 1.4] and m._held_count == 0


async def test_merger_does_not_wait_for_a_source_that_ended():
    clock = FakeClock()
    m = FrameMerger(2, window=10, clock=clock)
    m.add([_f(1.0, "a"), _f(2.0, "a")], source="a")
    m.source_ended("b")
    m._release()
    assert [f.ts for f in m._ready] == [1.0, 2.0]


async def test_merger_bounds_batches_and_drops_oldest_when_full():
    m = FrameMerger(1, max_batch=3, max_buffered=5)
    m.add([_f(float(i)) for i in range(8)])
    m.source_ended()
    batches = await _drain(m)
    assert [len(b.frames) for b in batches] == [3, 2]
    assert batches[0].dropped == 3 and batches[1].dropped == 0
    assert [f.ts for b in batches for f in b.frames] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert m.total_dropped == 3


async def test_merger_passes_notices_and_ends_when_every_source_ended():
    m = FrameMerger(2, window=0.01)
    m.add([_f(1.0, "a")], source="a")
    m.notice("b: capture ended: tcpdump was killed by SIGKILL")
    m.source_ended("b")
    m.add([_f(2.0, "a")], source="a")
    m.source_ended("a")
    batches = await asyncio.wait_for(_drain(m), 2)
    assert [f.ts for b in batches for f in b.frames] == [1.0, 2.0]
    assert [n for b in batches for n in b.notices] == ["b: capture ended: tcpdump was killed by SIGKILL"]


def _probe_out(tcpdump="/usr/bin/tcpdump", uid="0", sudo="no", ssh="198.18.0.9 5000 198.18.0.1 22"):
    addrs = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
             "2: eth0    inet 198.18.0.1/24 brd 198.18.0.255 scope global eth0\\       valid_lft forever\n"
             "3: docker_gwbridge    inet 172.18.0.1/16 scope global docker_gwbridge\n")
    return f"\n{_SECTION}\n".join([tcpdump, uid, sudo, addrs, ssh])


def test_probe_picks_the_interface_holding_the_advertise_address():
    node = NodeSpec("docker-node1", "198.18.0.1", advertise="198.18.0.1")
    plan = parse_probe(node, _probe_out(), 4789)
    assert plan.interface == "eth0"
    assert plan.command == "/usr/bin/tcpdump -U --immediate-mode -B 8192 -i eth0 -s 128 -w - udp port 4789"
    assert plan.addresses == ["198.18.0.1"]


def test_probe_falls_back_to_the_ssh_session_address_and_honours_overrides():
    by_session = parse_probe(NodeSpec("n", "node1.example"), _probe_out(), 8472)
    assert by_session.interface == "eth0" and by_session.command.endswith("udp port 8472")
    forced = parse_probe(NodeSpec("n", "198.18.0.1", capture_interface="br0"), _probe_out(), 4789)
    assert " -i br0 " in forced.command


def test_probe_errors_name_the_node_and_what_to_do():
    with pytest.raises(CaptureError, match=r"docker-node2: tcpdump is not installed.*package `tcpdump`"):
        parse_probe(NodeSpec("docker-node2", "198.18.0.2"), _probe_out(tcpdump="MISSING"), 4789)
    with pytest.raises(CaptureError, match=r"docker-node2: no interface .* 198.18.0.7.*capture_interface"):
        parse_probe(NodeSpec("docker-node2", "198.18.0.7"), _probe_out(), 4789)
    with pytest.raises(CaptureError, match=r"docker-node2: capturing needs root"):
        parse_probe(NodeSpec("docker-node2", "198.18.0.1", user="ops"), _probe_out(uid="1000"), 4789)
    sudo = parse_probe(NodeSpec("n", "198.18.0.1", user="ops"), _probe_out(uid="1000", sudo="yes"), 4789)
    assert sudo.remote.startswith("sudo -n sh -c ") and sudo.command.startswith("/usr/bin/tcpdump ")


def _net() -> NetworkInfo:
    return NetworkInfo("abc", "demo", "overlay", "global", "10.0.0.0/24", 256, ["n1", "n2"], [
        ContainerInfo("probe-n1", "n1", "demo", "10.0.0.2/24", "02:42:0a:00:00:02"),
        ContainerInfo("probe-n2", "n2", "demo", "10.0.0.3", "02:42:0a:00:00:03")])


def _inv() -> Inventory:
    return Inventory("inv.toml", (NodeSpec("n1", "198.18.0.1", advertise="198.18.0.1"),
                                  NodeSpec("n2", "198.18.0.2", advertise="198.18.0.2")))


def _vx(src, dst, isrc, idst, vni=256, proto="ICMP", **kw) -> Frame:
    return _f(1.0, outer_src=src, outer_dst=dst, vni=vni, inner_src=isrc, inner_dst=idst, proto=proto, **kw)


def test_names_label_frames_and_leave_unknowns_empty():
    names = build_names(_inv(), [_net()])
    frames = [_vx("198.18.0.1", "198.18.0.2", "10.0.0.2", "10.0.0.3"),
              _vx("198.18.0.1", "198.18.0.99", "10.0.0.9", "10.0.0.3", vni=999, proto="ARP",
                  inner_src_mac="02:42:0a:00:00:02")]
    apply_names(frames, names)
    a, b = frames
    assert (a.network, a.src_name, a.dst_name, a.outer_src_name, a.outer_dst_name) == \
        ("demo", "probe-n1@n1", "probe-n2@n2", "n1", "n2")
    assert (b.network, b.src_name, b.outer_dst_name) == (None, "probe-n1@n1", None)   # by MAC; unknowns None
    assert names_from_json(names_to_json(names)) == names


def test_step8_check_wants_every_node_pair_with_the_right_addresses():
    net, addr = _net(), {"n1": "198.18.0.1", "n2": "198.18.0.2"}
    both = [_vx("198.18.0.1", "198.18.0.2", "10.0.0.2", "10.0.0.3"),
            _vx("198.18.0.2", "198.18.0.1", "10.0.0.3", "10.0.0.2")]
    ok, detail = check_frames(both, net, addr)
    assert ok and "VNI 256 (demo)" in detail
    ok, detail = check_frames(both[:1], net, addr)
    assert not ok and "n2->n1" in detail
    ok, detail = check_frames([_vx("198.18.0.1", "198.18.0.2", "10.0.0.2", "10.0.0.3", vni=257), both[1]], net, addr)
    assert not ok and "n1->n2" in detail
    ok, detail = check_frames([_vx("198.18.0.1", "198.18.0.2", "10.0.0.3", "10.0.0.2"), both[1]], net, addr)
    assert not ok and "mismatched inner addresses" in detail


def test_the_pcap_recorded_on_the_lab_decodes_to_demos_vni_between_probes_and_nodes():
    import json
    from pathlib import Path

    from core.capture.pcap import read_pcap_frames

    here = Path(__file__).parent / "fixtures"
    side = json.loads((here / "lab_vxlan.json").read_text())
    frames = list(read_pcap_frames(here / "lab_vxlan.pcap"))
    assert len(frames) == side["frames"] >= 24
    node_of = {addr: node for node, addr in side["nodes"].items()}
    conts = side["containers"]
    assert side["vni"] >= 256                                  # classic (etcd store) mode allocates from 256
    apply_names(frames, names_from_json(side["names"]))
    for f in frames:
        assert f.error is None and f.vni == side["vni"] and f.network == side["network"]
        assert node_of[f.outer_src] == conts[f.inner_src]["node"]   # outer source: the inner source's node
        assert node_of[f.outer_dst] == conts[f.inner_dst]["node"]
        assert f.inner_src_mac == conts[f.inner_src]["mac"]
        assert (f.outer_src_name, f.outer_dst_name) == (node_of[f.outer_src], node_of[f.outer_dst])
        assert f.src_name == f"{conts[f.inner_src]['name']}@{conts[f.inner_src]['node']}"
    assert {f.info for f in frames if f.proto == "ICMP"} >= {"echo request", "echo reply"}
    assert {(f.outer_src, f.outer_dst) for f in frames} == {(a, b) for a in node_of for b in node_of if a != b}


async def test_replay_flows_detail_and_save_on_the_lab_fixture(tmp_path):
    import json
    from pathlib import Path

    from core.capture.pcap import read_pcap_frames
    from core.capture.service import CaptureService
    from core.ssh import SSHPool

    here = Path(__file__).parent / "fixtures"
    side = json.loads((here / "lab_vxlan.json").read_text())
    nodes = tuple(NodeSpec(name, addr, advertise=addr) for name, addr in side["nodes"].items())

    async def networks():             # no nodes to ask: the recorded network stands in for Docker's answer
        return [NetworkInfo("x", side["network"], "overlay", "global", side["subnet"], side["vni"], list(side["nodes"]),
                            [ContainerInfo(c["name"], c["node"], side["network"], ip, c["mac"])
                             for ip, c in side["containers"].items()])]
    svc = CaptureService(Inventory("fixture.toml", nodes), SSHPool(nodes), networks)
    batches = [b async for b in svc.replay(str(here / "lab_vxlan.pcap"))]
    frames = [f for b in batches for f in b.frames]
    assert len(frames) == side["frames"] and sum(b.malformed for b in batches) == 0
    assert all(f.network == "demo" and f.src_name and f.outer_src_name for f in frames)
    flows = svc.flows(frames)
    assert sum(s.packets for s in flows) == len(frames) and {s.network for s in flows} == {"demo"}
    detail = svc.frame_detail(frames[0])
    assert "###[ VXLAN ]###" in detail.layers and f"vni       = {hex(side['vni'])}" in detail.layers
    out = tmp_path / "again.pcap"
    assert await svc.save_pcap(frames, str(out)) == len(frames)
    assert [f.raw for f in read_pcap_frames(out)] == [f.raw for f in frames]
    await svc.pool.close()


def test_tcpdump_exit_counters_are_not_taken_for_errors_even_for_one_packet():
    from core.capture.remote import split_tcpdump_stderr

    stats, errors = split_tcpdump_stderr("1 packet captured\n1 packet received by filter\n"
                                         "0 packets dropped by kernel\n\ntcpdump: eth9: No such device exists\n")
    assert stats == ["1 packet captured", "1 packet received by filter", "0 packets dropped by kernel"]
    assert errors == ["tcpdump: eth9: No such device exists"]
