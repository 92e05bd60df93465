"""Links on the real 3-node lab: a share of one node's VXLAN frames is dropped in the lab switch
(nftables, bridge family, in the switch namespace: between the sender's capture point and the
receiver's), and `links` shows that loss on the node's outgoing pairs and ~0 elsewhere."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from contextlib import aclosing, contextmanager
from pathlib import Path

import pytest

from core.lab.net import LabNames
from core.links.format import snapshot_lines
from core.live import LiveService

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[1]
OVERLAY_TUI = [sys.executable, "-m", "tui.launcher"]       # this tree's code, not the installed one
APPLY_STEPS = ("ssh", "etcd", "etcd-health", "docker-store", "network", "converged", "probes")
TABLE = "overlay_tui_links_test"
PINGS, GAP = 200, 0.02


def nft(lab: str, *script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", LabNames(lab).switch_ns, "nft", *script],
                          capture_output=True, text=True, check=True)


@contextmanager
def dropping(lab: str, saddr: str, percent: int):
    """Drop ``percent``% of the VXLAN frames from ``saddr`` in the lab switch; removed on exit."""
    nft(lab, "add", "table", "bridge", TABLE)
    nft(lab, "flush", "table", "bridge", TABLE)     # a table left by a killed run must not add its rules
    try:
        nft(lab, "add", "chain", "bridge", TABLE, "fw", "{ type filter hook forward priority 0; }")
        rule = ["add", "rule", "bridge", TABLE, "fw", "ip", "saddr", saddr, "udp", "dport", "4789"]
        if percent < 100:
            rule += ["numgen", "random", "mod", "100", "<", str(percent)]
        nft(lab, *rule, "drop")
        yield
    finally:
        nft(lab, "delete", "table", "bridge", TABLE)


async def _apply(inventory) -> dict:
    svc = LiveService(inventory)
    try:
        return {e.step.id: e.step async for e in svc.runbook_apply()}
    finally:
        await svc.close()


@pytest.fixture(scope="module")
def overlay3(lab3):
    steps = asyncio.run(_apply(lab3.inventory))
    bad = {s: (steps[s].ok, steps[s].detail) for s in APPLY_STEPS if s not in steps or not steps[s].ok}
    assert not bad, f"the runbook did not bring the overlay up: {bad}"
    return lab3


async def flood(svc: LiveService, count: int = PINGS, gap: float = GAP) -> None:
    """Every probe pings every other probe ``count`` times, ``gap`` s apart, all at once."""
    running = await svc.dockerd.probes.running()
    ips = {n: ip for n, (_, ip) in running.items() if ip}
    assert len(ips) == len(svc.inventory.nodes), running

    async def one(src: str) -> None:
        targets = " ".join(ip for n, ip in ips.items() if n != src)
        script = f"for t in {targets}; do ping -q -c {count} -i {gap} -W 1 $t > /dev/null 2>&1 & done; wait"

        def run(cl) -> None:
            ex = cl.api.exec_create(f"probe-{src}", ["sh", "-c", script])
            cl.api.exec_start(ex["Id"])
        await svc.docker.call(src, run)
    await asyncio.gather(*(one(n) for n in ips))


async def _measure(svc: LiveService, seconds: float):
    """links over ``seconds`` while the probes flood each other (started once the capture runs)."""
    pings = None
    final = None
    async with aclosing(svc.links([], seconds, interval=0.5)) as snaps:
        async for snap in snaps:
            if pings is None:
                pings = asyncio.create_task(flood(svc))
            final = snap
    assert pings is not None
    await pings
    return final


async def test_loss_planted_in_the_switch_shows_on_that_nodes_outgoing_pairs_only(overlay3):
    node1 = overlay3.nodes[0]
    svc = LiveService(overlay3.inventory)
    try:
        with dropping(overlay3.name, node1.advertise or node1.address, 30):
            snap = await _measure(svc, PINGS * GAP + 6)
    finally:
        await svc.close()
    assert snap is not None and snap.final
    print("\n".join(snapshot_lines(snap)))
    rows = {(p.src, p.dst): p for p in snap.pairs}
    assert len(rows) == 6
    for (src, dst), p in rows.items():
        assert p.sent >= PINGS // 2, (src, dst, p)
        if src == node1.name:
            assert 0.15 <= p.loss <= 0.45, (src, dst, p.loss, p)
        else:
            assert p.loss <= 0.02, (src, dst, p.loss, p)
        assert p.delay_p50_ms is not None and 0 <= p.delay_p50_ms < 50
    nft_left = subprocess.run(["ip", "netns", "exec", LabNames(overlay3.name).switch_ns, "nft", "list", "tables"],
                              capture_output=True, text=True).stdout
    assert TABLE not in nft_left


def test_cli_links_json_on_the_lab_without_planted_loss(overlay3):
    async def run():
        svc = LiveService(overlay3.inventory)
        try:
            await flood(svc, count=40, gap=0.05)
        finally:
            await svc.close()
    proc = subprocess.Popen([*OVERLAY_TUI, "--inventory", overlay3.inventory_path, "links", "--seconds", "8",
                             "--json", "--per-vni"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:                     # the pings start once every node captures
        seen.append(line)
        if line.startswith("# capturing on"):
            break
    assert seen and seen[-1].startswith("# capturing on"), seen
    asyncio.run(run())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(seen) + err
    data = json.loads(out)
    keys = {"src", "dst", "vni", "sent", "received", "lost", "loss", "reordered", "duplicated",
            "delay_p50_ms", "delay_p99_ms"}
    assert len(data["pairs"]) == 6 and all(keys <= set(p) for p in data["pairs"]), data
    assert all(p["vni"] is not None and p["vni"] >= 256 and p["sent"] >= 20 for p in data["pairs"])
    assert sum(p["lost"] for p in data["pairs"]) <= 2


async def test_trace_names_the_last_hop_seen_across_a_dropped_path(overlay3):
    node1 = overlay3.nodes[0]
    svc = LiveService(overlay3.inventory)
    try:
        ok = await svc.trace("probe-docker-node1", "probe-docker-node2", count=2)
        assert ok.verdicts == [f"echo {i}: back in probe-docker-node1 after" + v.split("after")[1]
                               for i, v in enumerate(ok.verdicts)], ok
        assert all(h.ts is not None for h in ok.hops) and len(ok.hops) == 16 and not ok.unobservable
        with dropping(overlay3.name, node1.advertise or node1.address, 100):
            dead = await svc.trace("probe-docker-node1", "probe-docker-node2", count=2)
        assert dead.verdicts == [f"echo {i}: last seen at step 2 (VXLAN request leaves docker-node1); lost before: "
                                 "VXLAN request arrives at docker-node2" for i in range(2)], dead
        assert [h.ts is not None for h in dead.hops if h.seq == 0] == [True, True] + [False] * 6
        left = {n.name: (await svc.pool.run(n, "pgrep -a -x tcpdump || true")).stdout.strip()
                for n in overlay3.nodes}
        assert left == {n.name: "" for n in overlay3.nodes}
    finally:
        await svc.close()


def test_cli_trace_prints_every_hop(overlay3):
    out = subprocess.run([*OVERLAY_TUI, "--inventory", overlay3.inventory_path, "trace", "probe-docker-node2",
                          "probe-docker-node3", "--count", "1"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("trace probe-docker-node2") and lines[-1].startswith("echo 0: back in probe-docker-node2")
    assert sum(1 for line in lines if " ms" in line and line.strip()[0].isdigit()) == 8


async def test_active_probes_pairs_that_carry_no_traffic(overlay3):
    svc = LiveService(overlay3.inventory)
    try:
        snaps = [s async for s in svc.links([], 8, interval=1.0, active=True)]
    finally:
        await svc.close()
    final = snaps[-1]
    assert final.final and len(final.pairs) == 6
    assert all(p.sent >= 3 and p.received >= 3 and p.lost == 0 for p in final.pairs), final.pairs
