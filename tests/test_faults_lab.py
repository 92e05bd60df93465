"""Faults planted on a real 3-node lab with the runbook applied, each healed without losing anything.

One lab for the module (its own, not the session's): the runbook is applied once, a v3 key is put
and the demo network's ID and Docker's v2 keys are noted. Each test plants one fault (a dead sshd,
a link down, a dead dockerd, etcd killed on a minority or a majority, two applies at once), heals
it the way an operator would (`lab up`, `runbook apply`) and checks that nothing was lost: the same
network ID, the same etcd keys, every probe pinging every other, every dockerd's gossip knowing every
node. Tests leave the lab healed.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import lab_name, require_lab, start_lab, stop_lab

from core.dockerd import store
from core.etcd.tls import ENV_FILE
from core.lab import manager as lab_mod
from core.lab import node as lab_node
from core.live import LiveService

pytestmark = pytest.mark.lab
OVERLAY_TUI = str(Path(sys.executable).parent / "overlay-tui")
KEEP_KEY = "/overlay-tui-test/keep"
# the console script imports the installed tree; this checkout's code must be what runs
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def cli(inventory: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([OVERLAY_TUI, "--inventory", inventory, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=ENV)


def lab_up(lab, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([OVERLAY_TUI, "lab", "up", "--name", lab.name, *args], capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def apply_ok(lab) -> dict:
    out = cli(lab.inventory_path, "runbook", "apply", "--json")
    result = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    assert out.returncode == 0 and result.get("ok"), f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return result


def init_of(lab, node: str) -> int:
    info = lab_mod.lab_state(lab.name)
    assert info is not None
    n = next(n for n in info.nodes if n.name == node)
    assert n.init_pid
    return n.init_pid


def in_node(lab, node: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``command`` inside the node's namespaces from the host (works when its sshd is dead)."""
    res = subprocess.run(["nsenter", "-t", str(init_of(lab, node)), "--net", "--uts", "--mount", "--pid", "--",
                          "sh", "-c", command], capture_output=True, text=True, timeout=60,
                         env=lab_node.SERVICE_ENV)
    if check:
        assert res.returncode == 0, f"{command}: {res.stderr}"
    return res


def kill_in_node(lab, node: str, *, comm: str | None = None, sshd: bool = False) -> list[int]:
    """SIGKILL the node's processes with that comm (or its sshd listener); return their host pids."""
    init = init_of(lab, node)
    pidns = lab_node.ns_id(init, "pid")
    assert pidns is not None
    pids = [pid for pid, c, a in lab_node.argv0_in(pidns) if (comm and c == comm) or (sshd and lab_node.is_sshd_listener(a))]
    assert pids, f"no {comm or 'sshd'} on {node}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while any(lab_node.alive(p) for p in pids):
        assert time.monotonic() < deadline, f"{pids} survived SIGKILL"
        time.sleep(0.05)
    return pids


async def _facts(inventory) -> dict:
    svc = LiveService(inventory)
    try:
        nets = {n.name: (n.id, n.vni) for n in await svc.networks()}
        # the networks' own keys (endpoints change when a container is started again: that is not a loss)
        v2 = sorted(k.key for k in await svc.etcd_keys("v2", "/docker/network/v1.0/network"))
        v3 = {k.key: k.value for k in await svc.etcd_keys("v3", "/overlay-tui-test/")}
        pings = await svc.ping_matrix()
        names = [n.name for n in inventory.nodes]
        gossip = store.gossip_outsiders(await store.gossip_views(svc.pool, names), await svc.addresses.all(names))
    finally:
        await svc.close()
    return {"demo": nets.get("demo"), "v2": v2, "v3": v3,
            "pairs": len({(p.src, p.dst) for p in pings}),
            "failing": sorted(f"{p.src}->{p.target}: {p.error or p.loss}" for p in pings if p.loss or p.error)
            + [f"gossip: {n}: {why}" for n, why in gossip.items()]}


def facts(lab, *, settle: float = 60.0) -> dict:
    """Network ID, etcd keys and the ping matrix; polls (bounded) until every pair pings."""
    deadline = time.monotonic() + settle
    while True:
        try:
            f = asyncio.run(_facts(lab.inventory))
        except Exception as e:  # noqa: BLE001 - an election or a restarting daemon: look again
            f = {"error": str(e), "failing": ["error"]}
        if not f["failing"] or time.monotonic() > deadline:
            return f
        time.sleep(1.0)


def same_as_before(lab, before: dict) -> None:
    after = facts(lab)
    assert after.get("failing") == [], after
    assert after["demo"] == before["demo"], "the demo network was recreated (its ID or VNI changed)"
    assert after["v2"] == before["v2"], "Docker's network keys in etcd changed"
    assert after["v3"] == before["v3"], "etcd lost the v3 key"
    assert after["pairs"] == before["pairs"] == 6


@pytest.fixture(scope="module")
def faults_lab():
    require_lab()
    name = lab_name("f")
    try:
        lab = start_lab(name, 3)
        apply_ok(lab)
        in_node(lab, "docker-node1", f". {ENV_FILE} && etcdctl put {KEEP_KEY} kept")
        before = facts(lab)
        assert before["failing"] == [] and before["demo"] and before["v3"] == {KEEP_KEY: "kept"}, before
        yield lab, before
    finally:
        stop_lab(name)


def test_lab_up_heals_a_dead_sshd_and_loses_nothing(faults_lab):
    lab, before = faults_lab
    pids_before = in_node(lab, "docker-node2", "echo $(pgrep -x etcd) $(cat /var/run/docker.pid)").stdout
    kill_in_node(lab, "docker-node2", sshd=True)
    out = lab_up(lab)
    assert "healed: docker-node2: sshd was not running: started again in the node" in out.stdout, out.stdout
    assert "built in" not in out.stdout
    assert in_node(lab, "docker-node2", "echo $(pgrep -x etcd) $(cat /var/run/docker.pid)").stdout == pids_before
    same_as_before(lab, before)
    again = lab_up(lab)
    assert "already up, nothing to heal" in again.stdout, again.stdout


def test_lab_up_sets_a_link_up_again(faults_lab):
    lab, before = faults_lab
    info = lab_mod.lab_state(lab.name)
    assert info is not None
    subprocess.run(["ip", "-n", info.nodes[2].netns, "link", "set", "eth0", "down"], check=True)
    out = lab_up(lab)
    assert "healed: docker-node3: link eth0 was down: set up" in out.stdout, out.stdout
    same_as_before(lab, before)


def test_apply_starts_a_dead_dockerd_again_with_its_data(faults_lab):
    lab, before = faults_lab
    kill_in_node(lab, "docker-node2", comm="dockerd")
    log_before = in_node(lab, "docker-node2", "wc -c < /var/log/dockerd.log").stdout.strip()
    result = apply_ok(lab)
    store = next(s for s in result["steps"] if s["id"] == "docker-store")
    assert "already done" not in store["detail"], store
    log_after = in_node(lab, "docker-node2", "wc -c < /var/log/dockerd.log; head -c 200 /var/log/dockerd.log").stdout
    assert int(log_after.split()[0]) > int(log_before), "the dockerd log was truncated, not appended"
    assert "\0" not in log_after
    same_as_before(lab, before)


def _etcd_log_bytes(lab, node: str) -> int:
    return int(in_node(lab, node, "wc -c < /var/log/etcd.log").stdout.strip())


def test_apply_restarts_etcd_killed_on_a_minority(faults_lab):
    lab, before = faults_lab
    size = _etcd_log_bytes(lab, "docker-node3")
    kill_in_node(lab, "docker-node3", comm="etcd")
    result = apply_ok(lab)
    etcd = next(s for s in result["steps"] if s["id"] == "etcd")
    assert "already done" not in etcd["detail"], etcd
    assert _etcd_log_bytes(lab, "docker-node3") > size, "etcd.log was truncated by the restart"
    same_as_before(lab, before)


def test_apply_restarts_etcd_killed_on_a_majority_quorum_lost(faults_lab):
    lab, before = faults_lab
    kill_in_node(lab, "docker-node1", comm="etcd")
    kill_in_node(lab, "docker-node2", comm="etcd")
    status = cli(lab.inventory_path, "status", "--json", timeout=120)
    assert status.returncode == 1, "status must fail while etcd has lost quorum"
    apply_ok(lab)
    same_as_before(lab, before)


def test_two_applies_at_once_one_refuses_nothing_breaks(faults_lab):
    lab, before = faults_lab
    kill_in_node(lab, "docker-node2", comm="dockerd")      # so the applies have real work to race over
    procs = [subprocess.Popen([OVERLAY_TUI, "--inventory", lab.inventory_path, "runbook", "apply", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                              stdin=subprocess.DEVNULL) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [err for (out, err), p in zip(outs, procs) if p.returncode != 0]
    assert codes == [0, 1], outs
    assert "another runbook apply" in refused[0] and "nothing was changed" in refused[0], refused
    for node in ("docker-node1", "docker-node2", "docker-node3"):
        logs = in_node(lab, node, "cat /var/log/etcd.log /var/log/dockerd.log").stdout
        assert "address already in use" not in logs and "pid file found" not in logs
        assert "\0" not in logs, f"{node}: a log was truncated under a running writer (NUL bytes)"
    same_as_before(lab, before)


def test_status_with_one_node_ssh_down_blames_only_that_node(faults_lab):
    lab, before = faults_lab
    kill_in_node(lab, "docker-node3", sshd=True)
    out = cli(lab.inventory_path, "status", "--json", timeout=120)
    st = json.loads(out.stdout)
    assert out.returncode == 1 and st["healthy"] is False
    assert [p.split(":")[0] for p in st["problems"]] == ["docker-node3"], st["problems"]
    member = next(m for m in st["etcd"]["members"] if m["name"] == "docker-node3")
    # etcd itself is fine there: it is asked through another node, never called unhealthy for SSH's sake
    assert member["healthy"] or member["error"] == "unknown (node unreachable over SSH)", member
    assert not any("degraded" in line or "unavailable" in line for line in st["etcd"]["summary"]), st["etcd"]
    lab_up(lab)
    same_as_before(lab, before)


def test_status_with_a_link_down_is_fast_and_names_the_node(faults_lab):
    lab, before = faults_lab
    info = lab_mod.lab_state(lab.name)
    assert info is not None
    subprocess.run(["ip", "-n", info.nodes[2].netns, "link", "set", "eth0", "down"], check=True)
    try:
        t0 = time.monotonic()
        out = cli(lab.inventory_path, "status", "--json", timeout=120)
        took = time.monotonic() - t0
        st = json.loads(out.stdout)
        assert out.returncode == 1 and any(p.startswith("docker-node3: unreachable") for p in st["problems"]), st
        # one connect timeout (5 s) for the silent node, concurrently with the others; not one per part
        assert took < 12.0, f"status took {took:.1f} s with one node silent"
    finally:
        lab_up(lab)
    same_as_before(lab, before)


def test_lab_up_rebuilds_only_a_node_whose_namespace_is_gone(faults_lab):
    lab, before = faults_lab
    info = lab_mod.lab_state(lab.name)
    assert info is not None
    others = {n.name: n.init_pid for n in info.nodes if n.name != "docker-node3"}
    subprocess.run(["ip", "netns", "del", info.nodes[2].netns], check=True)
    out = lab_up(lab)
    assert "healed: docker-node3: rebuilt (its namespace was missing)" in out.stdout, out.stdout
    after = lab_mod.lab_state(lab.name)
    assert after is not None
    assert {n.name: n.init_pid for n in after.nodes if n.name != "docker-node3"} == others, "other nodes were touched"
    # its dockerd started (with its config) before its own etcd member was back: out of the gossip
    starts = in_node(lab, "docker-node3", "grep -c 'msg=\"Starting up\"' /var/log/dockerd.log").stdout.strip()
    # ONE apply: its etcd member starts again from its data dir; the docker-store step finds that dockerd out
    # of the gossip and brings it in: by announcing a node again in the store when its gossip knows nobody
    # (no restart), else by restarting it alone; its probe starts (the endpoint the killed node left is
    # disconnected). What the apply says it did must be what happened.
    # (Sometimes its etcd member is back while its dockerd still tries the store, and it joins on its own: then the
    # step has nothing to do, says so, and restarts nothing. Seen once in CI.)
    result = apply_ok(lab)
    store_step = next(s for s in result["steps"] if s["id"] == "docker-store")
    did = {d["node"]: d["message"] for d in store_step.get("done", [])}
    after = in_node(lab, "docker-node3", "grep -c 'msg=\"Starting up\"' /var/log/dockerd.log").stdout.strip()
    if "already done" in store_step["detail"]:
        assert did == {} and int(after) == int(starts), (store_step, after, starts)
        same_as_before(lab, before)
        return
    assert "out of the overlay's gossip" in did.get("docker-node3", ""), did
    if "joined the gossip once the store announced" in did["docker-node3"]:
        assert int(after) == int(starts), "brought in by the announce, yet its dockerd was restarted"
    else:
        assert "restarted alone: rejoined the gossip" in did["docker-node3"], did
        assert int(after) == int(starts) + 1, "the rebuilt node's dockerd was not restarted once"
    same_as_before(lab, before)
