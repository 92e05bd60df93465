"""The capture worker process and what it sends: columnar batches, flow deltas, errors, stopping.

The worker runs for real (``python -m core.capture.worker``) with its synthetic "flood" source (a pcap's
records as one tcpdump byte stream per node, through the same decoder and merge as a live capture); the
lab test of the live path is in tests/test_capture_live.py. Waits are on messages or bounded polls.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import aclosing
from pathlib import Path

import pytest

from core.capture.decode import VxlanDecoder
from core.capture.flows import FlowTable
from core.capture.names import apply_names
from core.capture.offload import WorkerCapture
from core.capture.pcap import iter_pcap, read_pcap_frames
from core.capture.wire import ColumnDecoder, ColumnEncoder, FrameColumns, pack_message, unpack_message
from core.errors import CaptureError
from core.model import FlowDelta, Frame, Names
from tests.capture_fixture import FIXTURE
from tui.capture.buffer import CaptureBuffer
from tui.capture.filter import parse_filter

ROOT = Path(__file__).resolve().parents[1]
MIXED = ROOT / "tests" / "fixtures" / "vxlan_mixed.pcap"
NAMES = Names(networks={256: "demo"}, containers={"198.19.0.2": "probe-docker-node1@docker-node1"},
              nodes={"198.18.0.1": "docker-node1"})


def _frames(path: Path = FIXTURE, node: str = "n1") -> list[Frame]:
    frames = list(read_pcap_frames(path, VxlanDecoder(), node))
    apply_names(frames, NAMES)
    return frames


def _columns(frames: list[Frame], encoder: ColumnEncoder | None = None,
             decoder: ColumnDecoder | None = None) -> FrameColumns:
    header, body = (encoder or ColumnEncoder()).encode(frames)
    head, view = unpack_message(pack_message(header, body)[4:])
    return (decoder or ColumnDecoder()).decode(head, view)


# --- the wire format ----------------------------------------------------------------------------------
def test_columns_give_back_every_field_of_every_frame():
    frames = _frames() + _frames(MIXED, "n2")          # malformed, non-VXLAN, IPv6, VLAN: None and "" fields
    cols = _columns(frames)
    assert len(cols) == len(frames)
    assert list(cols) == frames
    assert cols[-1] == frames[-1] and cols[3] is cols[3]          # built once, then kept
    assert list(cols[10:20]) == frames[10:20] and list(cols[10:20][2:4]) == frames[12:14]
    assert any(f.vni is None for f in frames) and any(f.error for f in frames)


def test_strings_are_sent_once_and_a_reset_table_leaves_old_batches_intact():
    enc, dec = ColumnEncoder(), ColumnDecoder()
    frames = _frames()
    h1, b1 = enc.encode(frames[:100])
    h2, b2 = enc.encode(frames[100:200])
    assert h1["reset"] and not h2["reset"] and len(h2["strings"]) < len(h1["strings"])
    first = dec.decode(h1, b1)
    second = dec.decode(h2, b2)
    enc.strings.table.extend([None] * 1_000_001)             # past the limit: the next batch starts a new table
    h3, b3 = enc.encode(frames[200:])
    third = dec.decode(h3, b3)
    assert h3["reset"]
    assert list(first) + list(second) + list(third) == frames


def test_select_matches_the_filter_frame_by_frame_and_counts_its_flows():
    frames = _frames() + _frames(MIXED, "n2")
    cols = _columns(frames)
    for text in ("vni=256 proto=icmp", "host=probe-docker-node1", "node=n2 proto!=tcp", "proto=malformed",
                 "src=198.19.0.0/24", "net=demo"):
        flt = parse_filter(text)
        assert flt is not None
        rows = cols.select(flt.predicate, {})
        assert rows == [i for i, f in enumerate(frames) if flt.predicate(f)], text
        counted, expected = FlowTable(), FlowTable()
        cols.count_flows(rows, counted)
        expected.add_many(frames[i] for i in rows)
        assert counted.flows(NAMES) == expected.flows(NAMES), text


def test_flow_deltas_per_batch_add_up_to_a_recomputation_over_every_frame():
    frames = _frames() + _frames(MIXED, "n2")
    whole = FlowTable()
    whole.add_many(frames)
    summed = FlowTable()
    for i in range(0, len(frames), 37):
        part = FlowTable()
        part.add_many(frames[i:i + 37])
        summed.merge_deltas(part.deltas())
    assert summed.flows(NAMES) == whole.flows(NAMES)
    assert summed.flows(NAMES, now=frames[-1].ts + 0.5) == whole.flows(NAMES, now=frames[-1].ts + 0.5)
    assert (summed.malformed, summed.not_vxlan) == (whole.malformed, whole.not_vxlan) != (0, 0)


def test_the_buffer_takes_columnar_batches_with_their_flows_and_filters_them_like_frames():
    frames = _frames() + _frames(MIXED, "n2")
    enc, dec = ColumnEncoder(), ColumnDecoder()
    cols_buf, list_buf = CaptureBuffer(300), CaptureBuffer(300)       # small: batches fall out of the ring
    flt = parse_filter("vni=256")
    for b in (cols_buf, list_buf):
        b.set_filter(flt)
    for i in range(0, len(frames), 50):
        chunk = frames[i:i + 50]
        part = FlowTable()
        part.add_many(chunk)
        cols_buf.add(_columns(chunk, enc, dec), flows=part.deltas(), names=NAMES)
        list_buf.add(list(chunk))
    assert cols_buf.ring.items() == list_buf.ring.items() and cols_buf.ring.dropped > 0
    assert cols_buf.shown() == list_buf.shown()
    assert cols_buf.flow_stats() == list_buf.flow_stats()         # the filter's flows (the list's counted now)
    assert cols_buf.flows.flows(NAMES) == list_buf.flows.flows(NAMES) != []
    cols_buf.set_filter(parse_filter("proto=icmp"))              # rebuilt over the batches held
    list_buf.set_filter(parse_filter("proto=icmp"))
    assert cols_buf.shown() == list_buf.shown() and cols_buf.flow_stats() == list_buf.flow_stats()
    cols_buf.paused = True
    cols_buf.add(_columns(frames[:10], enc, dec), flows=[])
    assert cols_buf.resume() == 10 and cols_buf.ring.items()[-10:] == frames[:10]


# --- the worker process ---------------------------------------------------------------------------------
def _flood(nodes=("docker-node1", "docker-node2"), rate: float = 20_000, pcap: Path = FIXTURE) -> WorkerCapture:
    return WorkerCapture({"source": "flood", "pcap": str(pcap), "nodes": list(nodes), "rate": rate,
                          "first_wait": 5.0})


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:                    # a zombie is gone too (its parent has not reaped it)
        return fh.read().rsplit(")", 1)[1].split()[0] == "Z"


async def _until(cond, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_the_worker_decodes_names_and_counts_flows_as_the_console_would():
    work = _flood()
    await work.start()
    try:
        assert "docker-node1 (flood" in work.where
        await work.send_names(NAMES)
        got: list[Frame] = []
        summed = FlowTable()
        async for batch in work.batches():
            assert isinstance(batch.frames, FrameColumns) and batch.flows is not None
            got.extend(batch.frames)
            summed.merge_deltas(batch.flows)
            if len(got) >= 3000:
                break
    finally:
        await work.close()
    assert work.proc is not None and work.proc.returncode == 0
    records = [(data, wl) for _ts, _cap, wl, data in iter_pcap(FIXTURE)]
    dec = VxlanDecoder()
    for f in got:                                      # each is a fixture record, decoded and named as here
        want = dec.decode(f.raw, f.ts, f.wire_len, f.node)
        apply_names([want], NAMES)
        assert f == want
        assert (f.raw, f.wire_len) in records or f.error
    assert {f.node for f in got} == {"docker-node1", "docker-node2"}
    assert any(f.network == "demo" and f.src_name for f in got)       # the names sent down were applied
    assert all(a.ts <= b.ts for a, b in zip(got, got[1:]))          # merged in time order
    whole = FlowTable()
    whole.add_many(got)
    assert summed.flows(NAMES) == whole.flows(NAMES)


async def test_closing_the_capture_generator_stops_the_worker():
    work = _flood()
    await work.start()
    pid = work.pid
    assert pid is not None and not _gone(pid)
    async with aclosing(work.batches()) as batches:
        async for _ in batches:
            break
    await work.close()
    assert work.proc is not None and work.proc.returncode == 0 and _gone(pid)


async def test_a_worker_that_dies_is_a_capture_error_naming_it():
    work = _flood()
    await work.start()
    assert work.pid is not None
    with pytest.raises(CaptureError, match=r"capture worker process ended unexpectedly \(killed by signal 9\)"):
        async for _ in work.batches():
            os.kill(work.pid, signal.SIGKILL)
    await work.close()


async def test_a_worker_error_arrives_as_the_typed_error_with_its_sentence(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    work = _flood(pcap=empty)
    with pytest.raises(CaptureError, match="empty.pcap: no frames to flood with"):
        await work.start()
    await work.close()
    assert work.proc is not None and work.proc.returncode == 1


def test_the_worker_dies_with_the_console(tmp_path):
    """A console killed outright (no cleanup at all) takes its worker with it."""
    code = textwrap.dedent(f"""
        import asyncio, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from core.capture.offload import WorkerCapture
        async def main():
            w = WorkerCapture({{"source": "flood", "pcap": {str(FIXTURE)!r}, "nodes": ["a"], "rate": 1000}})
            await w.start()
            print(w.pid, flush=True)
            os.kill(os.getpid(), 9)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 15
    while not _gone(pid):
        assert time.monotonic() < deadline, "the worker outlived its console"
        time.sleep(0.05)


async def test_the_service_runs_a_live_capture_in_a_worker_by_default(monkeypatch):
    """Without nodes to reach, the worker's typed start error comes back through the service."""
    from core.live import LiveService
    from core.model import ClusterSpec, Inventory, NodeSpec

    monkeypatch.delenv("OVERLAY_TUI_CAPTURE_WORKER", raising=False)
    node = NodeSpec("ghost", "198.18.255.250", user="root", port=1, connect_timeout=1.0, command_timeout=2.0)
    svc = LiveService(Inventory(path="", nodes=(node,), cluster=ClusterSpec()), read_only=True)
    try:
        with pytest.raises(CaptureError, match="ghost"):
            async with aclosing(svc.capture([])) as batches:
                async for _ in batches:
                    break
        worker = svc.capture_part.worker
        assert worker is not None and worker.proc is not None and worker.proc.returncode == 1
    finally:
        await svc.close()


def test_flow_delta_is_json_safe():
    from core.capture.wire import flows_from_json, flows_to_json
    d = [FlowDelta(None, "a", "b", "MALFORMED", 2, 100, {5: [2, 100]}), FlowDelta(256, "x", "y", "TCP", 1, 1, {})]
    assert flows_from_json(flows_to_json(d)) == d
