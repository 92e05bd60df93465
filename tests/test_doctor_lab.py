"""The doctor on the real lab: healthy after the runbook, then each fault planted on one node (a duplicate
hostname, an iptables drop of UDP 4789 or TCP 7946, a smaller underlay MTU, TCP 2375 listening, a bridge
cut off by FORWARD DROP, a stopped etcd member) is named with that node, and the lab is restored after
each. Faults the lab cannot plant are in tests/test_doctor_parse.py."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.live import LiveService

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parent.parent
N1, N2 = "docker-node1", "docker-node2"


async def _apply(inventory) -> None:
    svc = LiveService(inventory)
    try:
        async for ev in svc.runbook_apply():
            assert ev.step.ok is not False, f"runbook step {ev.step.id} failed: {ev.step.detail}"
    finally:
        await svc.close()


@pytest.fixture(scope="module")
def applied2(lab2):
    """lab2 with the runbook applied once for the module (etcd, store, `demo`, probes)."""
    asyncio.run(_apply(lab2.inventory))
    return lab2


@pytest.fixture
async def svc(applied2):
    s = LiveService(applied2.inventory)
    yield s
    await s.close()


def by_id(report) -> dict:
    return {c.id: c for c in report.checks}


def cli(inventory: str, *args: str) -> subprocess.CompletedProcess:
    """This tree's CLI (``-m tui.launcher`` from the repository root, as tests/test_capture_cli.py)."""
    return subprocess.run([sys.executable, "-m", "tui.launcher", "--inventory", inventory, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_healthy_lab_passes_and_the_json_is_exact(applied2):
    out = cli(applied2.inventory_path, "doctor", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"ok", "checks"} and data["ok"] is True
    assert all(set(c) == {"id", "status", "nodes", "summary", "evidence", "fix"} for c in data["checks"])
    checks = {c["id"]: c for c in data["checks"]}
    for cid in ("ssh", "versions.docker", "versions.etcd", "hostnames", "ports.udp4789", "ports.udp7946",
                "ports.tcp7946", "mtu.underlay", "mtu.path", "kernel.vxlan", "clock.skew", "etcd.quorum",
                "etcd.v2", "etcd.disk", "docker.tcp", "iptables.forward", "gossip.converged", "etcd.db-quota",
                "etcd.leader-changes", "nic.vmxnet3", "kernel.esp"):
        assert checks[cid]["status"] == "ok", checks[cid]
    # the lab's 2 members are a real finding, named as a warning; its etcd is behind TLS (the runbook's default)
    assert checks["etcd.members"]["status"] == "warn" and "no fault tolerance" in checks["etcd.members"]["summary"]
    assert checks["etcd.plaintext"]["status"] == "ok", checks["etcd.plaintext"]
    assert "joined" in checks["gossip.converged"]["summary"] or "last join" in checks["gossip.converged"]["summary"]
    human = cli(applied2.inventory_path, "doctor")
    assert human.returncode == 0 and human.stdout.splitlines()[0].startswith("ok   ssh")


def test_unknown_node_is_bad_input(applied2):
    out = cli(applied2.inventory_path, "doctor", "--node", "nope")
    assert out.returncode == 2 and "unknown node 'nope'" in out.stderr


async def test_duplicate_hostname(svc):
    await svc.pool.run(N2, f"hostname {N1}", check=True)
    try:
        report = await svc.doctor(checks=["hostnames"])
    finally:
        await svc.pool.run(N2, f"hostname {N2}", check=True)
    row = by_id(report)["hostnames"]
    assert (row.status, row.nodes) == ("fail", [N1, N2]) and f"{N2}: hostname -> {N1}" in row.evidence
    assert (await svc.doctor(checks=["hostnames"])).ok


async def test_iptables_drop_of_udp_4789_and_tcp_7946_into_one_node(svc, applied2):
    rules = ["INPUT -p udp --dport 4789 -j DROP", "INPUT -p tcp --dport 7946 -j DROP"]
    for r in rules:
        await svc.pool.run(N2, f"iptables -I {r}", check=True)
    try:
        report = await svc.doctor(checks=["ports.udp4789", "ports.udp7946", "ports.tcp7946"])
        out = cli(applied2.inventory_path, "doctor", "--check", "ports.udp4789", "--node", N2)
    finally:
        for r in rules:
            await svc.pool.run(N2, f"iptables -D {r}", check=True)
    rows = by_id(report)
    assert rows["ports.udp4789"].status == "fail" and f"{N1} -> {N2}" in rows["ports.udp4789"].summary
    assert f"{N2} -> {N1}" not in rows["ports.udp4789"].summary
    assert rows["ports.tcp7946"].status == "fail" and f"{N1} -> {N2}" in rows["ports.tcp7946"].summary
    assert rows["ports.udp7946"].status == "ok"
    assert out.returncode == 1 and "FAIL ports.udp4789" in out.stdout and "fix:" in out.stdout
    # the counting tables are gone, and the path is fine again
    tables = await svc.pool.run(N2, "nft list tables", check=True)
    assert "overlay_tui_doctor" not in tables.stdout
    assert (await svc.doctor(checks=["ports.udp4789", "ports.tcp7946"])).ok


async def test_smaller_mtu_on_one_node(svc):
    await svc.pool.run(N2, "ip link set dev eth0 mtu 1400", check=True)
    try:
        report = await svc.doctor(checks=["mtu.underlay", "mtu.path"])
    finally:
        await svc.pool.run(N2, "ip link set dev eth0 mtu 1500", check=True)
    rows = by_id(report)
    assert (rows["mtu.underlay"].status, rows["mtu.underlay"].nodes) == ("fail", [N2])
    assert "mtu=1350" in rows["mtu.underlay"].fix
    assert rows["mtu.path"].status == "fail" and N2 in rows["mtu.path"].nodes
    assert any("path MTU 1400" in e for e in rows["mtu.path"].evidence)


async def test_docker_tcp_2375_listening(svc):
    pid = await svc.pool.start_detached(N2, "busybox nc -l -p 2375", "/tmp/doctor-nc.log")
    try:
        for _ in range(50):                 # bounded: until ss shows the listener
            if ":2375" in (await svc.pool.run(N2, "ss -ltnH")).stdout:
                break
        report = await svc.doctor(checks=["docker.tcp"])
    finally:
        await svc.pool.kill(N2, pid)
    row = by_id(report)["docker.tcp"]
    assert (row.status, row.nodes) == ("fail", [N2]) and any("2375" in e for e in row.evidence)
    assert (await svc.doctor(checks=["docker.tcp"])).ok


async def test_a_bridge_cut_off_by_forward_drop(svc):
    await svc.pool.run(N2, "ip link add br-doctor type bridge", check=True)
    try:
        report = await svc.doctor(checks=["iptables.forward"])
    finally:
        await svc.pool.run(N2, "ip link del br-doctor", check=True)
    row = by_id(report)["iptables.forward"]
    assert (row.status, row.nodes) == ("warn", [N2]) and "br-doctor" in row.summary


async def test_a_stopped_etcd_member_loses_quorum_and_is_named(svc):
    pid = int((await svc.pool.run(N2, "pgrep -xo etcd", check=True)).stdout)
    await svc.pool.kill(N2, pid)
    try:
        # an etcd that dies at once leaves its fatal line in the log, as a full disk would
        await svc.pool.run(N2, "etcd --name x --data-dir /proc/doctor-nope --listen-client-urls http://127.0.0.1:23799 "
                               "--advertise-client-urls http://127.0.0.1:23799 --listen-peer-urls http://127.0.0.1:23800 "
                               ">> /var/log/etcd.log 2>&1")
        report = await svc.doctor(checks=["etcd.quorum", "etcd.members", "etcd.v2"])
        status = await svc.node_status(N2)
        listing = await svc.network_listing()
    finally:
        await svc.etcd_apply()              # starts node2's member again from its data dir
    rows = by_id(report)
    assert rows["etcd.quorum"].status == "fail" and "no quorum" in rows["etcd.quorum"].summary
    assert N2 in rows["etcd.quorum"].nodes
    # the stopped member says why; the network Docker cannot list any more is named, not dropped
    assert status.etcd_state == "stopped" and "cannot access data directory" in (status.etcd_last_error or "")
    assert "demo" not in [n.name for n in listing.networks]
    assert "etcd has no quorum" in listing.problems["store"] and "demo" in listing.problems["store"]
    assert (await svc.doctor(checks=["etcd.quorum"])).ok


async def test_one_unreachable_node_does_not_stall_the_others(applied2):
    from dataclasses import replace

    from core.model import NodeSpec

    inv = applied2.inventory
    dead = NodeSpec(name="docker-node9", address="198.18.255.250", user="root", key=inv.nodes[0].key,
                    known_hosts=inv.nodes[0].known_hosts, connect_timeout=2.0)
    svc = LiveService(replace(inv, nodes=(*inv.nodes, dead)))
    try:
        report = await svc.doctor(checks=["ssh", "hostnames", "mtu.underlay"])
    finally:
        await svc.close()
    rows = by_id(report)
    assert (rows["ssh"].status, rows["ssh"].nodes) == ("fail", ["docker-node9"])
    assert rows["hostnames"].status == "ok" and rows["mtu.underlay"].status == "ok"
    assert report.seconds < 20
