"""The runbook end to end on the real lab: apply on 2 and 3 nodes, a second apply is a no-op,
and `status --json` shows the tutorial's result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
OVERLAY_TUI = str(Path(sys.executable).parent / "overlay-tui")
STEP_IDS = ["ssh", "etcd", "etcd-health", "docker-store", "network", "converged", "probes", "vxlan"]


def cli(inventory: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([OVERLAY_TUI, "--inventory", inventory, *args], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def daemon_pids(lab) -> dict[str, str]:
    """etcd and dockerd pids on every node, read over the lab's own ssh (not our client)."""
    pids = {}
    for node in lab.nodes:
        out = subprocess.run(["ssh", "-i", node.key, "-o", f"UserKnownHostsFile={node.known_hosts}",
                              "-o", "BatchMode=yes", f"root@{node.address}",
                              "echo $(pgrep -x etcd) $(cat /var/run/docker.pid)"],
                             capture_output=True, text=True, timeout=30, check=True)
        pids[node.name] = out.stdout.strip()
    return pids


def apply_twice(lab) -> list[dict]:
    first = json.loads(cli(lab.inventory_path, "runbook", "apply", "--json").stdout)
    assert first["ok"] is True, first
    assert [s["id"] for s in first["steps"]] == STEP_IDS
    assert all(s["ok"] is True for s in first["steps"]), first["steps"]
    before = daemon_pids(lab)
    second = json.loads(cli(lab.inventory_path, "runbook", "apply", "--json").stdout)
    assert second["ok"] is True
    assert daemon_pids(lab) == before, "a second apply restarted etcd or dockerd"
    for step in second["steps"]:
        if step["id"] in ("etcd", "etcd-health", "docker-store", "network", "probes"):
            assert "already done" in step["detail"], step
        assert "done" not in step, step          # nothing applied: no node has anything to say it did
    return second["steps"]


def test_apply_on_two_nodes_verifies_every_step_and_a_second_apply_changes_nothing(lab2):
    steps = apply_twice(lab2)
    vxlan = next(s for s in steps if s["id"] == "vxlan")
    assert "VNI" in vxlan["detail"]


def test_apply_on_three_nodes(lab3):
    steps = apply_twice(lab3)
    probes = next(s for s in steps if s["id"] == "probes")
    assert probes["detail"].startswith("6 pairs"), probes


def test_status_json_after_apply(lab2):
    cli(lab2.inventory_path, "runbook", "apply", "--json")
    status = json.loads(cli(lab2.inventory_path, "status", "--json").stdout)
    assert [(n["name"], n["reachable"]) for n in status["nodes"]] == [("docker-node1", True), ("docker-node2", True)]
    assert {n["store_mode"] for n in status["nodes"]} == {"etcd (classic)"}
    members = status["etcd"]["members"]
    assert sorted(m["name"] for m in members) == ["docker-node1", "docker-node2"]
    assert all(m["healthy"] for m in members) and sum(m["leader"] for m in members) == 1
    assert all(m["id"] and m["client_urls"] for m in members)
    demo = [n for n in status["networks"] if n["name"] == "demo"]
    assert len(demo) == 1, "demo must merge into one network with one ID"
    assert demo[0]["driver"] == "overlay" and demo[0]["scope"] == "global"
    assert demo[0]["vni"] >= 256 and sorted(demo[0]["nodes"]) == ["docker-node1", "docker-node2"]


def test_plan_lists_the_exact_commands_per_node(lab2):
    plan = json.loads(cli(lab2.inventory_path, "runbook", "plan", "--json").stdout)
    assert [s["id"] for s in plan["steps"]] == STEP_IDS
    etcd = next(s for s in plan["steps"] if s["id"] == "etcd")
    sizing, *per_node = etcd["commands"]
    assert sizing.startswith("members: docker-node1, docker-node2 (default sizing")
    assert len(per_node) == 4          # per node: install the TLS certificates, then start etcd
    for node, install, cmd in zip(lab2.nodes, per_node[::2], per_node[1::2]):
        assert install.startswith(f"{node.name}: install the cluster CA") and "/etc/etcd/pki" in install
        assert cmd.startswith(f"{node.name}: etcd --name {node.name} ")
        assert f"--advertise-client-urls https://{node.address}:2379" in cmd and "--enable-v2=true" in cmd
        assert "--client-cert-auth" in cmd and "--peer-client-cert-auth" in cmd


def test_without_inventory_and_without_lab_the_cli_says_how_to_give_one(tmp_path):
    env = {**os.environ, "OVERLAY_TUI_STATE": str(tmp_path)}
    env.pop("OVERLAY_TUI_INVENTORY", None)
    out = subprocess.run([OVERLAY_TUI, "runbook", "plan"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "--inventory FILE" in out.stderr and "lab up" in out.stderr and "Traceback" not in out.stderr


def test_apply_reports_progress_per_step_and_node_on_a_fresh_lab():
    import asyncio

    from conftest import lab_name, require_lab, start_lab, stop_lab

    from core.live import LiveService

    async def apply(inventory) -> list:
        svc = LiveService(inventory)
        try:
            return [ev async for ev in svc.runbook_apply()]
        finally:
            await svc.close()

    require_lab()
    name = lab_name("r")
    try:
        events = asyncio.run(apply(start_lab(name, 2).inventory))
    finally:
        stop_lab(name)
    per_node: dict[str, set[str]] = {}
    for ev in events:
        if ev.node:
            per_node.setdefault(ev.step.id, set()).add(ev.node)
    both = {"docker-node1", "docker-node2"}
    assert per_node == {"etcd": both, "docker-store": both, "network": both, "probes": both}, per_node
    messages = {(ev.step.id, ev.node): ev.message for ev in events if ev.node}
    assert messages[("etcd", "docker-node1")].startswith("etcd start")
    assert messages[("probes", "docker-node2")] == "probe-docker-node2 started"
    assert all(ev.step.ok for ev in events if not ev.step.running)
