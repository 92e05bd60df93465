"""Grow and shrink on a real lab: 3 nodes -> 4 (a store client) -> 5 (with etcd_members = 5: two members
join through member-add) -> remove one member; nothing lost at any point (network ID and VNI, etcd keys,
every probe pinging every other)."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from conftest import lab_name, require_lab, start_lab, stop_lab
from test_faults_lab import ENV, ENV_FILE, KEEP_KEY, OVERLAY_TUI, _facts, apply_ok, cli, in_node

from core.inventory import load_inventory
from core.live import LiveService

pytestmark = pytest.mark.lab


def lab_up(lab, *args: str) -> str:
    import subprocess

    out = subprocess.run([OVERLAY_TUI, "lab", "up", "--name", lab.name, *args], capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def reload(lab):
    lab.inventory = load_inventory(lab.inventory_path)
    lab.nodes = lab.inventory.nodes
    return lab


def settled(lab, pairs: int, tries: int = 60) -> dict:
    import time

    deadline = time.monotonic() + tries
    while True:
        try:
            f = asyncio.run(_facts(lab.inventory))
        except Exception as e:  # noqa: BLE001 - an election or a daemon restarting: look again
            f = {"error": str(e), "failing": ["error"], "pairs": 0}
        if (not f["failing"] and f["pairs"] == pairs) or time.monotonic() > deadline:
            return f
        time.sleep(1.0)


async def _stores_and_members(inventory) -> tuple[dict[str, str], list[str]]:
    svc = LiveService(inventory)
    try:
        stores = {}
        for n in inventory.nodes:
            info = await svc.docker.call(n.name, lambda cl: cl.info())
            stores[n.name] = info.get("ClusterStore") or ""
        cluster = await svc.etcd_cluster()
        assert cluster.healthy, cluster.summary
        return stores, sorted(m.name for m in cluster.members)
    finally:
        await svc.close()


async def _info(inventory, node: str) -> dict:
    svc = LiveService(inventory)
    try:
        return await svc.docker.call(node, lambda cl: cl.info())
    finally:
        await svc.close()


async def _v2_nodes(inventory) -> list[str]:
    svc = LiveService(inventory)
    try:
        return [k.key for k in await svc.etcd_keys("v2", "/docker/nodes")]
    finally:
        await svc.close()


def test_grow_3_4_5_and_remove_one_keeps_everything():
    require_lab()
    name = lab_name("g")
    try:
        lab = start_lab(name, 3)
        apply_ok(lab)
        in_node(lab, "docker-node1", f". {ENV_FILE} && etcdctl put {KEEP_KEY} kept")
        before = settled(lab, 6)
        assert before["failing"] == [] and before["v3"] == {KEEP_KEY: "kept"}, before

        # 3 -> 4: the default sizing keeps 3 members; node4 is a store client of all three
        assert "docker-node4: added" in lab_up(lab, "--nodes", "4")
        reload(lab)
        plan = json.loads(cli(lab.inventory_path, "runbook", "plan", "--json").stdout)
        etcd_cmds = next(s for s in plan["steps"] if s["id"] == "etcd")["commands"]
        assert etcd_cmds[0].startswith("members: docker-node1, docker-node2, docker-node3 (default sizing: 4 node(s)")
        assert "no etcd on docker-node4" in etcd_cmds[1]
        apply_ok(lab)
        stores, members = asyncio.run(_stores_and_members(lab.inventory))
        ips = [n.address for n in lab.nodes]
        assert stores["docker-node4"] == "etcd://" + ",".join(f"{ip}:2379" for ip in ips[:3])
        assert members == ["docker-node1", "docker-node2", "docker-node3"]
        assert in_node(lab, "docker-node4", "pgrep -x etcd || echo none").stdout.strip() == "none"
        f = settled(lab, 12)
        assert f["failing"] == [] and f["demo"] == before["demo"] and f["v3"] == before["v3"], f

        # 4 -> 5 with etcd_members = 5: node4 and node5 join through member-add (state existing)
        assert "docker-node5: added" in lab_up(lab, "--nodes", "5")
        inv = Path(lab.inventory_path)
        inv.write_text(re.sub(r"^\[cluster\]$", "[cluster]\netcd_members = 5", inv.read_text(), count=1, flags=re.M))
        reload(lab)
        plan = json.loads(cli(lab.inventory_path, "runbook", "plan", "--json").stdout)
        etcd_cmds = next(s for s in plan["steps"] if s["id"] == "etcd")["commands"]
        for joiner in ("docker-node4", "docker-node5"):       # the plan says they join, with the command they get
            assert any(c.startswith(f"{joiner}: joins the running cluster") for c in etcd_cmds), etcd_cmds
            cmd = next(c for c in etcd_cmds if c.startswith(f"{joiner}: ") and " --name " in c)
            assert "--initial-cluster-state existing" in cmd and "docker-node1=" in cmd, cmd
        assert not any(c.startswith("docker-node1: joins") for c in etcd_cmds), etcd_cmds
        result = apply_ok(lab)
        etcd = next(s for s in result["steps"] if s["id"] == "etcd")
        assert "already done" not in etcd["detail"]
        # the JSON says what the apply did, node by node: the joiners' members and their dockerds' store
        did = {step["id"]: {d["node"]: d["message"] for d in step.get("done", [])} for step in result["steps"]}
        assert {"docker-node4", "docker-node5"} <= set(did["etcd"]), did["etcd"]
        assert did["docker-store"]["docker-node5"].startswith("configure"), did["docker-store"]
        stores, members = asyncio.run(_stores_and_members(lab.inventory))
        assert members == [f"docker-node{i}" for i in range(1, 6)]
        assert stores["docker-node4"] == f"etcd://{ips[3]}:2379"
        f = settled(lab, 20)
        assert f["failing"] == [] and f["demo"] == before["demo"] and f["v3"] == before["v3"], f

        # remove a member: member-remove first, quorum kept; the inventory loses its table
        five = lab.inventory
        assert asyncio.run(_info(five, "docker-node2"))["ClusterStore"] == f"etcd://{ips[1]}:2379"
        out = cli(lab.inventory_path, "node", "remove", "docker-node2", "--yes")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "etcd member" in out.stdout and "removed from the inventory" in out.stdout, out.stdout
        reload(lab)
        assert [n.name for n in lab.nodes] == ["docker-node1", "docker-node3", "docker-node4", "docker-node5"]
        # the removed node's dockerd is back on local scope: no store keys at all in daemon.json, its data kept
        gone = json.loads(in_node(lab, "docker-node2", "cat /etc/docker/daemon.json").stdout)
        assert not {"cluster-store", "cluster-advertise", "cluster-store-opts"} & set(gone), gone
        assert gone["bip"] == "198.19.255.1/24", "the node's own keys were not kept"
        info = asyncio.run(_info(five, "docker-node2"))          # through the inventory that still has it
        assert not info.get("ClusterStore") and not info.get("ClusterAdvertise"), info
        assert in_node(lab, "docker-node2", "docker image ls -q overlay-tui/busybox:1").stdout.strip()
        assert "store entries" in out.stdout and "removed through" in out.stdout, out.stdout
        assert f"/docker/nodes/{ips[1]}:2375" not in asyncio.run(_v2_nodes(lab.inventory))
        apply_ok(lab)
        stores, members = asyncio.run(_stores_and_members(lab.inventory))
        assert members == ["docker-node1", "docker-node3", "docker-node4", "docker-node5"]
        f = settled(lab, 12)
        assert f["failing"] == [] and f["demo"] == before["demo"] and f["v3"] == before["v3"], f
    finally:
        stop_lab(name)
