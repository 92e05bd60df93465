"""RecordedCapture: the recorded service's capture, replay, flows, detail and pcap writing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.capture.pcap import read_pcap_frames
from core.errors import CaptureError, UsageError
from core.recorded.service import RecordedService
from tests.capture_fixture import FIXTURE, expected_counts

STATE = Path(__file__).parent / "fixtures" / "lab_state.json"


async def collect(stream):
    frames, notices, malformed = [], [], 0
    async for batch in stream:
        frames += batch.frames
        notices += batch.notices
        malformed += batch.malformed
    return frames, notices, malformed


async def test_capture_replays_the_recording_labelled_and_named():
    svc = RecordedService.load(STATE)
    frames, notices, malformed = await collect(svc.capture([]))
    exp = expected_counts()
    assert len(frames) == exp["frames"] and malformed == exp["malformed"]
    assert notices[0].startswith("replaying capture_small.pcap") and notices[-1] == f"recording ended: {len(frames)} frames replayed"
    ok = [f for f in frames if f.error is None]
    assert all(f.node == f.outer_src_name for f in ok)          # the sender's node captured it
    assert {f.network for f in ok} == {"demo", "web"}
    icmp = next(f for f in ok if f.proto == "ICMP" and f.vni == 256)
    assert icmp.src_name == "probe-docker-node1@docker-node1" and icmp.outer_dst_name == "docker-node2"


async def test_capture_on_some_nodes_keeps_their_frames_only():
    svc = RecordedService.load(STATE)
    frames, _, _ = await collect(svc.capture(["docker-node3"]))
    ok = [f for f in frames if f.error is None]
    assert ok and all("docker-node3" in (f.outer_src_name, f.outer_dst_name) for f in ok)
    assert all(f.node == "docker-node3" for f in frames)


async def test_capture_is_deterministic():
    a, _, _ = await collect(RecordedService.load(STATE).capture([]))
    b, _, _ = await collect(RecordedService.load(STATE).capture([]))
    assert [(f.ts, f.node, f.raw) for f in a] == [(f.ts, f.node, f.raw) for f in b]


async def test_unknown_node_and_missing_recording_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown node docker-node9 .*; known nodes: docker-node1"):
        await collect(RecordedService.load(STATE).capture(["docker-node9"]))
    state = json.loads(STATE.read_text())
    state["capture"] = {"pcap": "nowhere.pcap"}
    (tmp_path / "s.json").write_text(json.dumps(state))
    with pytest.raises(CaptureError, match="nowhere.pcap: no recorded capture"):
        await collect(RecordedService.load(tmp_path / "s.json").capture([]))


async def test_state_names_its_pcap_relative_to_itself(tmp_path):
    state = json.loads(STATE.read_text())
    state["capture"] = {"pcap": "other.pcap"}
    (tmp_path / "s.json").write_text(json.dumps(state))
    shutil.copy(FIXTURE, tmp_path / "other.pcap")
    frames, _, _ = await collect(RecordedService.load(tmp_path / "s.json").capture([]))
    assert len(frames) == expected_counts()["frames"]


async def test_replay_flows_detail_and_save(tmp_path):
    svc = RecordedService.load(STATE)
    frames, _, _ = await collect(svc.replay(str(FIXTURE)))
    assert len(frames) == expected_counts()["frames"] and all(f.node == "" for f in frames)
    flows = svc.flows(frames)
    assert sum(s.packets for s in flows) == len(frames)
    assert flows[0].bytes >= flows[-1].bytes and flows[1].src_name == "probe-docker-node1@docker-node1"
    detail = svc.frame_detail(frames[0])
    assert "VXLAN" in detail.layers and detail.hexdump.startswith("0000")
    out = tmp_path / "x.pcap"
    assert await svc.save_pcap(frames[:10], str(out)) == 10
    assert [f.raw for f in read_pcap_frames(out)] == [f.raw for f in frames[:10]]


async def test_a_truncated_recording_says_so(tmp_path):
    state = json.loads(STATE.read_text())
    state["capture"] = {"pcap": "cut.pcap"}
    (tmp_path / "s.json").write_text(json.dumps(state))
    (tmp_path / "cut.pcap").write_bytes(FIXTURE.read_bytes()[:-30])
    frames, notices, _ = await collect(RecordedService.load(tmp_path / "s.json").capture([]))
    assert len(frames) == expected_counts()["frames"] - 1
    assert any("cut short" in n for n in notices)
