"""Live capture over SSH on the real 2-node lab with the overlay applied (etcd, classic store, `demo`, probes).

Real traffic (the probes' ping matrix) is captured on both nodes' underlay and checked: the VNI is
`demo`'s (>= 256 in classic mode), inner addresses are the probes', outer ones the nodes'; frames are
named, merged in time order; stopping leaves no tcpdump on the nodes; a node whose tcpdump dies gives
a notice while the other goes on; the CLI prints the promised JSON and writes a pcap tcpdump reads.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest

from core.capture.verify import collect_frames, verify_vxlan
from core.errors import CaptureError
from core.live import LiveService

pytestmark = pytest.mark.lab
OVERLAY_TUI = str(Path(sys.executable).parent / "overlay-tui")
APPLY_STEPS = ("ssh", "etcd", "etcd-health", "docker-store", "network", "converged", "probes")


async def _apply(inventory) -> dict:
    svc = LiveService(inventory)
    try:
        return {e.step.id: e.step async for e in svc.runbook_apply()}
    finally:
        await svc.close()


@pytest.fixture(scope="module")
def overlay2(lab2):
    """lab2 with the runbook applied through step 7 (probes on every node ping each other)."""
    steps = asyncio.run(_apply(lab2.inventory))
    bad = {s: (steps[s].ok, steps[s].detail) for s in APPLY_STEPS if s not in steps or not steps[s].ok}
    assert not bad, f"the runbook did not bring the overlay up: {bad}"
    return lab2


@pytest.fixture
async def svc(overlay2):
    s = LiveService(overlay2.inventory)
    try:
        yield s
    finally:
        await s.close()


async def _demo(svc):
    net = next(n for n in await svc.networks() if n.name == svc.inventory.cluster.network)
    probes = {c.ip.split("/")[0]: c for c in net.containers if c.ip}
    return net, probes


def _disorder(frames) -> list[str]:
    """Neighbours out of time order, described (empty when the merge kept time order)."""
    return [f"{a.node} {a.ts:.6f} before {b.node} {b.ts:.6f} ({(a.ts - b.ts) * 1000:.1f} ms)"
            for a, b in zip(frames, frames[1:]) if a.ts > b.ts]


async def _tcpdumps(svc) -> dict[str, str]:
    out = {}
    for n in svc.inventory.nodes:
        res = await svc.pool.run(n, "pgrep -a -x tcpdump || true")
        out[n.name] = res.stdout.strip()
    return out


async def _tcpdumps_left(svc, within: float = 5.0) -> dict[str, str]:
    """:func:`_tcpdumps` once none runs, or after ``within`` s. A stop kills tcpdump and waits until it is gone;
    only when that kill fails (logged as a warning) does it close the channel, and the node's watchdog then
    stops tcpdump a moment later."""
    deadline = asyncio.get_running_loop().time() + within
    while (left := await _tcpdumps(svc)) and any(left.values()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    return left


async def test_lab_traffic_is_decoded_with_the_networks_vni_and_the_probes_and_nodes_addresses(svc):
    net, probes = await _demo(svc)
    nodes = {n.advertise: n.name for n in svc.inventory.nodes}
    frames, notices = await collect_frames(svc, [], svc.ping_matrix())
    assert notices and notices[0].startswith("capturing on docker-node1 (eth0), docker-node2 (eth0)")
    assert net.vni is not None and net.vni >= 256
    icmp = [f for f in frames if f.proto == "ICMP"]
    assert len(icmp) >= 8, [f.proto for f in frames]
    for f in icmp:
        assert f.vni == net.vni
        assert {f.inner_src, f.inner_dst} <= set(probes), (f.inner_src, f.inner_dst, probes)
        assert {f.outer_src, f.outer_dst} <= set(nodes), (f.outer_src, f.outer_dst)
        # the outer source is the node that runs the inner source's container
        assert nodes[f.outer_src] == probes[f.inner_src].node
        assert nodes[f.outer_dst] == probes[f.inner_dst].node
        assert f.network == net.name
        assert f.src_name == f"{probes[f.inner_src].name}@{probes[f.inner_src].node}"
        assert f.dst_name == f"{probes[f.inner_dst].name}@{probes[f.inner_dst].node}"
        assert (f.outer_src_name, f.outer_dst_name) == (nodes[f.outer_src], nodes[f.outer_dst])
    # both nodes captured, merged into one stream in time order
    assert {f.node for f in icmp} == {"docker-node1", "docker-node2"}
    assert _disorder(frames) == []
    # each echo crosses the underlay once and is seen on both ends: the same bytes on both nodes
    by_bytes: dict[bytes, set] = {}
    for f in icmp:
        by_bytes.setdefault(f.raw[14:], set()).add(f.node)
    assert sum(1 for v in by_bytes.values() if v == {"docker-node1", "docker-node2"}) >= len(by_bytes) * 0.9


async def test_stopping_the_capture_leaves_no_tcpdump_on_any_node(svc):
    # 1: the consumer closes the generator
    async with aclosing(svc.capture([])) as batches:
        async for batch in batches:
            assert batch.notices[0].startswith("capturing on")
            running = await _tcpdumps(svc)
            assert all("tcpdump -U --immediate-mode" in v for v in running.values()), running
            break
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}

    # 2: the consumer's task is cancelled while it waits for frames
    started = asyncio.Event()

    async def consume():
        async for _ in svc.capture(["docker-node1", "docker-node2"]):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 15)
    running = await _tcpdumps(svc)
    assert all("tcpdump" in v for v in running.values()), running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}


async def test_a_node_whose_tcpdump_dies_ends_with_a_notice_the_other_goes_on_and_it_resumes(svc):
    batches = []
    started = asyncio.Event()

    async def consume():
        async for b in svc.capture([]):
            batches.append(b)
            started.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(started.wait(), 15)
        pid = (await _tcpdumps(svc))["docker-node2"].split()[0]     # the first batch comes once it listens
        await svc.pool.run("docker-node2", f"kill -9 {pid}", check=True)
        for _ in range(50):
            if any("docker-node2: capture ended" in n for b in batches for n in b.notices):
                break
            await asyncio.sleep(0.1)
        mark = len(batches)
        # the node's part is started again (backoff 1 s): wait for the notice, then its frames come back
        for _ in range(150):
            if any(n == "docker-node2: capture resumed" for b in batches for n in b.notices):
                break
            await asyncio.sleep(0.1)
        resumed = len(batches)
        for _ in range(20):
            await svc.ping_matrix()
            if any(f.node == "docker-node2" for b in batches[resumed:] for f in b.frames):
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    notices = [n for b in batches for n in b.notices]
    assert "docker-node2: capture ended: tcpdump was killed by SIGKILL (retrying)" in notices
    assert "docker-node2: capture resumed" in notices
    between = [f for b in batches[mark:resumed - 1] for f in b.frames]
    assert {f.node for f in between} <= {"docker-node1"}
    assert any(f.node == "docker-node2" for b in batches[resumed:] for f in b.frames), "node2 did not resume"
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}


async def test_a_node_whose_ssh_connection_breaks_ends_with_a_notice_while_the_other_goes_on(svc, overlay2):
    batches = []
    started = asyncio.Event()

    async def consume():
        async for b in svc.capture([]):
            batches.append(b)
            started.set()

    task = asyncio.create_task(consume())
    other = LiveService(overlay2.inventory)
    try:
        await asyncio.wait_for(started.wait(), 15)
        pid = (await _tcpdumps(svc))["docker-node2"].split()[0]     # the first batch comes once it listens
        # end the sshd session that carries our connection to docker-node2 (the parent of the capture's
        # watchdog shell, which is tcpdump's parent)
        res = await other.pool.run("docker-node2", f"kill $(ps -o ppid= -p $(ps -o ppid= -p {pid}))", check=True)
        assert res.ok
        for _ in range(50):
            if any("docker-node2: capture ended" in n for b in batches for n in b.notices):
                break
            await asyncio.sleep(0.1)
        assert not task.done()
        assert "tcpdump" in (await _tcpdumps(other))["docker-node1"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await other.close()
    assert "docker-node2: capture ended: connection lost (Connection lost) (retrying)" in [n for b in batches for n in b.notices]
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}     # the pool reconnects


async def test_runbook_step8_sees_demos_vni_between_the_right_addresses(svc):
    state = await verify_vxlan(svc, "demo")
    net, _ = await _demo(svc)
    assert state.ok is True, state.detail
    assert f"VNI {net.vni} (demo)" in state.detail
    assert "docker-node1->docker-node2" in state.detail and "docker-node2->docker-node1" in state.detail


async def test_cli_capture_json_lines_and_a_pcap_tcpdump_reads(svc, overlay2, tmp_path):
    net, probes = await _demo(svc)
    out = tmp_path / "live.pcap"
    proc = await asyncio.create_subprocess_exec(
        OVERLAY_TUI, "--inventory", overlay2.inventory_path, "capture", "--node", "docker-node1",
        "--node", "docker-node2", "--count", "6", "--json", "--write", str(out), "--seconds", "30",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert first.decode().startswith("# capturing on docker-node1"), first
    await svc.ping_matrix()
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    rows = [json.loads(line) for line in stdout.decode().splitlines()]
    assert len(rows) == 6
    for r in rows:
        assert {"node", "outer_src", "outer_dst", "vni", "network", "inner_src", "inner_dst", "proto",
                "length"} <= set(r)
        assert r["vni"] == net.vni and r["network"] == "demo"
        assert r["node"] in ("docker-node1", "docker-node2")
    assert "6 frames captured" in stderr.decode()
    text = subprocess.run(["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True, check=True).stdout
    assert text.count(f"vni {net.vni}") == 6, text
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}


def test_cli_capture_unknown_node_exits_2(overlay2):
    res = subprocess.run([OVERLAY_TUI, "--inventory", overlay2.inventory_path, "capture", "--node", "docker-node7",
                          "--count", "1"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "unknown node docker-node7" in res.stderr and "docker-node1" in res.stderr


async def test_a_node_without_tcpdump_is_a_clear_error_and_leaves_nothing_running(svc):
    # hide tcpdump on docker-node2 only (the node has a mount namespace of its own)
    await svc.pool.run("docker-node2", "mount --bind /dev/null /usr/bin/tcpdump", check=True)
    try:
        with pytest.raises(CaptureError, match=r"^docker-node2: tcpdump is not installed .*package `tcpdump`"):
            async with aclosing(svc.capture([])) as batches:
                async for _ in batches:
                    break
    finally:
        await svc.pool.run("docker-node2", "umount /usr/bin/tcpdump", check=True)
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}


async def test_cli_capture_stops_cleanly_on_ctrl_c(overlay2, svc):
    proc = await asyncio.create_subprocess_exec(
        OVERLAY_TUI, "--inventory", overlay2.inventory_path, "capture", "--node", "docker-node1",
        "--node", "docker-node2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert first.decode().startswith("# capturing on"), first
    await svc.ping_matrix()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert len(lines) >= 8 and all(" vni " in line for line in lines)
    assert f"# {len(lines)} frames captured" in stderr.decode()
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}


async def test_a_node_whose_link_goes_down_ends_with_a_notice_while_the_other_goes_on(svc, overlay2):
    netns = next(n.netns for n in overlay2.info.nodes if n.name == "docker-node2")
    batches = []
    started = asyncio.Event()

    async def consume():
        async for b in svc.capture([], health=(1.0, 2.0)):
            batches.append(b)
            started.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(started.wait(), 15)
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "eth0", "down"], check=True)
        try:
            for _ in range(100):
                if any("docker-node2: capture ended" in n for b in batches for n in b.notices):
                    break
                await asyncio.sleep(0.1)
        finally:
            subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "eth0", "up"], check=True)
        mark = len(batches)
        assert not task.done()                                    # docker-node1 goes on
        assert "tcpdump" in (await _tcpdumps(svc))["docker-node1"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    notices = [n for b in batches for n in b.notices]
    assert any(n.startswith("docker-node2: capture ended: the node does not answer over SSH") for n in notices), notices
    resumed = next((i for i, b in enumerate(batches) if "docker-node2: capture resumed" in b.notices), len(batches))
    assert all(f.node == "docker-node1" for b in batches[mark:resumed] for f in b.frames)
    # once the link is back, the channel's close reaches the node and its watchdog stops tcpdump
    for _ in range(60):
        if await _tcpdumps(svc) == {"docker-node1": "", "docker-node2": ""}:
            break
        await asyncio.sleep(0.5)
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}
    # leave the shared lab as we found it: the overlay carries the probes' pings again
    for _ in range(30):
        results = await svc.ping_matrix()
        if results and all(r.loss == 0 and not r.error for r in results):
            break
        await asyncio.sleep(1)
    assert results and all(r.loss == 0 and not r.error for r in results), results


async def test_three_nodes_merge_in_time_order_and_step8_sees_every_pair(lab3):
    steps = await _apply(lab3.inventory)
    assert all(steps[s].ok for s in APPLY_STEPS), {s: steps[s].detail for s in APPLY_STEPS if s in steps}
    svc = LiveService(lab3.inventory)
    try:
        state = await verify_vxlan(svc, "demo")
        assert state.ok is True, state.detail
        assert state.detail.count("->") == 6                      # every ordered pair of the 3 nodes
        frames, _ = await collect_frames(svc, [], svc.ping_matrix())
        assert {f.node for f in frames} == {"docker-node1", "docker-node2", "docker-node3"}
        assert _disorder(frames) == []
        assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": "", "docker-node3": ""}
    finally:
        await svc.close()


async def test_cli_read_names_a_file_from_the_live_cluster(svc, overlay2, tmp_path):
    """`capture --read FILE --names` names VNIs, containers and nodes as a live capture does."""
    net, probes = await _demo(svc)
    root = Path(__file__).resolve().parents[1]
    cli = [sys.executable, "-m", "tui.launcher", "--inventory", overlay2.inventory_path, "capture"]
    out = tmp_path / "live.pcap"
    proc = await asyncio.create_subprocess_exec(
        *cli, "--node", "docker-node1", "--count", "6", "--write", str(out), "--seconds", "30", cwd=root,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert first.decode().startswith("# capturing on docker-node1"), first
    await svc.ping_matrix()
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    nodes = {n.name for n in overlay2.inventory.nodes}
    labels = {f"{c.name}@{c.node}" if c.node else c.name for c in probes.values()}
    for extra in ([], ["--flows"]):
        named = await asyncio.to_thread(subprocess.run, [*cli, "--read", str(out), "--names", "--json", *extra],
                                        cwd=root, capture_output=True, text=True, timeout=60)
        assert named.returncode == 0, named.stderr
        rows = [json.loads(line) for line in named.stdout.splitlines()]
        assert rows and all(r["vni"] == net.vni and r["network"] == "demo" for r in rows)
        assert all(r["src_name"] in labels and r["dst_name"] in labels for r in rows if r["inner_src"] in probes)
        if not extra:
            assert all(r["outer_src_name"] in nodes and r["outer_dst_name"] in nodes for r in rows)
    raw = await asyncio.to_thread(subprocess.run, [*cli, "--read", str(out), "--json"], cwd=root,
                                  capture_output=True, text=True, timeout=60)
    assert all(json.loads(line)["network"] is None for line in raw.stdout.splitlines())


async def test_a_live_capture_decodes_names_and_counts_flows_in_a_worker_process(svc):
    """The default live path: a worker process of its own captures, decodes, names and counts flows; the
    console gets columnar batches (Frames built when read) with per-batch flow counts; closing stops it all."""
    from core.capture.flows import FlowTable
    from core.capture.wire import FrameColumns

    net, probes = await _demo(svc)
    frames: list = []
    summed = FlowTable()
    pinged = None
    async with aclosing(svc.capture([])) as batches:
        async for batch in batches:
            worker = svc.capture_part.worker
            assert worker is not None and worker.pid is not None and worker.proc.returncode is None
            if pinged is None:
                assert batch.notices[0].startswith("capturing on docker-node1 (eth0), docker-node2 (eth0)")
                pinged = asyncio.create_task(svc.ping_matrix())
                continue
            assert isinstance(batch.frames, FrameColumns) and batch.flows is not None
            frames.extend(batch.frames)
            summed.merge_deltas(batch.flows)
            if pinged.done() and sum(f.proto == "ICMP" for f in frames) >= 8:
                break
    await pinged
    assert worker.proc.returncode == 0                      # stopped in order when the generator closed
    assert await _tcpdumps_left(svc) == {"docker-node1": "", "docker-node2": ""}
    nodes = {n.advertise: n.name for n in svc.inventory.nodes}
    icmp = [f for f in frames if f.proto == "ICMP"]
    for f in icmp:
        assert f.vni == net.vni and f.network == net.name
        assert f.src_name == f"{probes[f.inner_src].name}@{probes[f.inner_src].node}"
        assert f.dst_name == f"{probes[f.inner_dst].name}@{probes[f.inner_dst].node}"
        assert (f.outer_src_name, f.outer_dst_name) == (nodes[f.outer_src], nodes[f.outer_dst])
        assert f.raw[14] == 0x45 and len(f.raw) <= 128          # the captured bytes (snap length 128)
    assert {f.node for f in icmp} == {"docker-node1", "docker-node2"}
    assert _disorder(frames) == []
    whole = FlowTable()
    whole.add_many(frames)
    assert summed.flows() == whole.flows()                 # the worker's per-batch counts add up exactly
