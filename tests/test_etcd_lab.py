"""The etcd control plane on the real lab: apply, adopt, health, refusal of foreign data, keys, watch.

The shared labs (lab2/lab3, also used by the Docker and runbook tests of the session) only see
applies, reads and test keys, and are left with etcd healthy on every member. Tests that stop,
block or replace members use labs of their own, so Docker on the shared labs never loses its store.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import lab_name, require_lab, start_lab, stop_lab

from core.errors import EtcdError
from core.live import LiveService

pytestmark = pytest.mark.lab
OVERLAY_TUI = str(Path(sys.executable).parent / "overlay-tui")
# etcd runs over TLS with client certificates: etcdctl on a node reads its endpoint and certificates here
ETCDCTL = ". /etc/etcd/etcdctl.env && etcdctl"
ETCDCTL2 = ('. /etc/etcd/etcdctl.env && ETCDCTL_API=2 etcdctl --ca-file "$ETCDCTL_CACERT" --cert-file "$ETCDCTL_CERT" '
            '--key-file "$ETCDCTL_KEY"')


@asynccontextmanager
async def service(lab):
    svc = LiveService(lab.inventory)
    try:
        yield svc
    finally:
        await svc.close()


async def etcd_pids(svc) -> dict[str, str]:
    res = await asyncio.gather(*(svc.pool.run(n.name, "pgrep -x etcd") for n in svc.inventory.nodes))
    return {n.name: r.stdout.strip() for n, r in zip(svc.inventory.nodes, res)}


async def assert_every_node_lists_every_member(svc) -> None:
    """Each node's own etcdctl (not our client) lists every member with its URLs."""
    names = [n.name for n in svc.inventory.nodes]
    plans = {p.node: p for p in await svc.etcd_plan()}
    for node in names:
        res = await svc.pool.run(node, f"{ETCDCTL} member list", check=True)
        lines = res.stdout.strip().splitlines()
        assert len(lines) == len(names), res.stdout
        for other in names:
            assert any(f", started, {other}, " in ln and plans[other].client_url in ln for ln in lines), res.stdout


async def apply_and_check(lab) -> None:
    async with service(lab) as svc:
        cluster = (await svc.etcd_apply()).cluster
        assert cluster.healthy, cluster.summary
        assert sorted(m.name for m in cluster.members) == [n.name for n in lab.nodes]
        assert sum(m.leader for m in cluster.members) == 1
        assert cluster.summary[-1] == "cluster is healthy"
        for m in cluster.members:
            assert m.version and m.version.startswith("3.") and m.raft_term and m.raft_index and m.latency_ms is not None
            assert len(m.id) >= 8 and int(m.id, 16)
        pids = await etcd_pids(svc)
        assert all(pids.values()), pids
        await assert_every_node_lists_every_member(svc)
    async with service(lab) as svc:          # a fresh service: the second apply changes nothing
        again = await svc.etcd_apply()
        assert again.cluster.healthy
        assert [a.kind for a in again.actions] == ["adopt"] * len(lab.nodes)
        assert await etcd_pids(svc) == pids


@pytest.fixture(scope="module")
def own_lab3():
    """A 3-node lab for the tests that stop or block members."""
    require_lab()
    name = lab_name("g")
    try:
        yield start_lab(name, 3)
    finally:
        stop_lab(name)


async def test_apply_on_two_nodes_then_adopt(lab2):
    await apply_and_check(lab2)


async def test_apply_on_three_nodes_then_adopt(lab3):
    await apply_and_check(lab3)


async def test_a_stopped_member_shows_unhealthy_then_comes_back(own_lab3):
    lab3 = own_lab3
    async with service(lab3) as svc:
        await svc.etcd_apply()
        pid = int((await etcd_pids(svc))["docker-node3"])
        await svc.pool.kill("docker-node3", pid)
        try:
            t0 = time.monotonic()
            cluster = await asyncio.wait_for(svc.etcd_cluster(), 10)
            assert time.monotonic() - t0 < 5
            by_name = {m.name: m for m in cluster.members}
            assert not by_name["docker-node3"].healthy and by_name["docker-node3"].error
            assert by_name["docker-node1"].healthy and by_name["docker-node2"].healthy
            assert not cluster.healthy and cluster.summary[-1] == "cluster is degraded"
            out = subprocess.run([OVERLAY_TUI, "--inventory", lab3.inventory_path, "status", "--json"],
                                 capture_output=True, text=True, timeout=60)
            members = {m["name"]: m for m in json.loads(out.stdout)["etcd"]["members"]}
            assert members["docker-node3"]["healthy"] is False
            assert members["docker-node1"]["healthy"] is True
            assert {"name", "id", "client_urls", "healthy", "leader"} <= set(members["docker-node1"])
        finally:
            applied = await svc.etcd_apply()          # restarts node3's member from its data dir
            cluster = applied.cluster
        assert cluster.healthy
        assert [a.kind for a in applied.actions] == ["adopt", "adopt", "start"]


SQUAT_CLIENT_PORT = ("python3 -c 'import socket, time; s = socket.socket(); "
                     "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                     "s.bind((\"127.0.0.1\", 2379)); s.listen(); time.sleep(600)'")


async def test_a_member_that_cannot_start_is_named_with_its_log(own_lab3):
    async with service(own_lab3) as svc:
        await svc.etcd_apply()
        await svc.pool.kill("docker-node3", int((await etcd_pids(svc))["docker-node3"]))
        squatter = await svc.pool.start_detached("docker-node3", SQUAT_CLIENT_PORT, "/var/log/overlay-tui-squat.log")
        await svc.pool.run("docker-node3", "for i in $(seq 50); do ss -ltn | grep -q '127.0.0.1:2379 ' && exit 0; "
                           "sleep 0.1; done; exit 1", check=True)
        try:
            t0 = time.monotonic()
            with pytest.raises(EtcdError) as err:
                await svc.etcd_apply(timeout=20)
            assert time.monotonic() - t0 < 20
            msg = str(err.value)
            assert msg.startswith("etcd on docker-node3 exited")
            assert "--- docker-node3: /var/log/etcd.log (last lines) ---" in msg
            assert "address already in use" in msg
        finally:
            await svc.pool.kill("docker-node3", squatter)
            cluster = (await svc.etcd_apply()).cluster
        assert cluster.healthy


async def test_keys_v3_and_v2(lab2):
    async with service(lab2) as svc:
        await svc.etcd_apply()
        stamp = str(time.time_ns())
        await svc.pool.run("docker-node2", f"{ETCDCTL} put /overlay-tui-test/k '{{\"stamp\": {stamp}}}'", check=True)
        keys = await svc.etcd_keys("v3", "/overlay-tui-test/")
        assert [(k.key, k.value, k.source) for k in keys] == [
            ("/overlay-tui-test/k", json.dumps({"stamp": int(stamp)}, indent=2), "v3")]
        await svc.pool.run("docker-node1", f"{ETCDCTL2} set /overlay-tui-test/d/v '[{stamp}]'", check=True)
        tree = await svc.etcd_keys("v2", "/overlay-tui-test")
        assert [(k.key, k.is_dir) for k in tree] == [("/overlay-tui-test", True), ("/overlay-tui-test/d", True),
                                                     ("/overlay-tui-test/d/v", False)]
        assert tree[2].value == json.dumps([int(stamp)], indent=2)
        await svc.pool.run("docker-node1", f"{ETCDCTL} del --prefix /overlay-tui-test/; "
                           f"{ETCDCTL2} rm -r /overlay-tui-test", check=True)


async def next_event(stream, seen: list, kind: str, key: str, action: str | None = None) -> None:
    async with asyncio.timeout(20):
        async for ev in stream:
            seen.append(ev)
            if ev.kind == kind and ev.key == key and action in (None, ev.action):
                return


async def test_watch_sees_a_put_and_cancels_cleanly(lab2):
    async with service(lab2) as svc:
        await svc.etcd_apply()
        key = f"/overlay-tui-watch/{time.time_ns()}"
        stream, seen = svc.watch(), []
        try:
            await next_event(stream, seen, "watch", "v3", "started")
            await svc.pool.run("docker-node1", f"{ETCDCTL} put {key} hello", check=True)
            await next_event(stream, seen, "key", key)
        finally:
            await stream.aclose()
        assert (seen[-1].action, seen[-1].value, seen[-1].source) == ("put", "hello", "v3")
        assert {e.key for e in seen if e.kind == "member" and e.action == "added"} >= {"docker-node1", "docker-node2"}
        await asyncio.sleep(0.2)
        assert not [t for t in threading.enumerate() if t.name == "overlay-tui-etcd-watch" and t.is_alive()]
        await svc.pool.run("docker-node1", f"{ETCDCTL} del {key}", check=True)


async def test_watch_resumes_on_another_member_without_losing_a_put(own_lab3):
    async with service(own_lab3) as svc:
        await svc.etcd_apply()
        stream, seen = svc.watch(), []
        try:
            await next_event(stream, seen, "watch", "v3", "started")
            await svc.pool.kill("docker-node1", int((await etcd_pids(svc))["docker-node1"]))   # the watched member
            await svc.pool.run("docker-node2", f"{ETCDCTL} put /overlay-tui-watch/gap 2", check=True)
            await next_event(stream, seen, "key", "/overlay-tui-watch/gap")
        finally:
            await stream.aclose()
            cluster = (await svc.etcd_apply()).cluster
        assert any(e.kind == "watch" and e.action == "error" for e in seen)
        assert (seen[-1].action, seen[-1].value) == ("put", "2")
        assert cluster.healthy


FOREIGN = ("etcd --name foreign --initial-cluster-token another-cluster --data-dir {dd} "
           "--listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 "
           "--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 "
           "--initial-cluster foreign=http://127.0.0.1:23800")


async def make_foreign_data_dir(svc, node: str, data_dir: str) -> None:
    """Run a throwaway single-member etcd of another cluster into ``data_dir``, then stop it."""
    pid = await svc.pool.start_detached(node, FOREIGN.format(dd=data_dir), "/var/log/etcd-foreign.log")
    await svc.pool.run(node, f"for i in $(seq 100); do [ -d {data_dir}/member/wal ] && exit 0; sleep 0.1; done; exit 1",
                       check=True)
    await asyncio.sleep(0.5)
    await svc.pool.kill(node, pid)


async def test_foreign_data_dir_is_refused_then_force_wipes_it():
    require_lab()
    name = lab_name("e")
    lab = await asyncio.to_thread(start_lab, name, 2)
    try:
        async with service(lab) as svc:
            data_dir = {p.node: p.data_dir for p in await svc.etcd_plan()}["docker-node2"]
            await make_foreign_data_dir(svc, "docker-node2", data_dir)
            with pytest.raises(EtcdError) as err:
                await svc.etcd_apply()
            msg = str(err.value)
            assert "nothing was changed" in msg
            assert f"docker-node2: data dir {data_dir} holds an etcd member with no overlay-tui marker" in msg
            assert "--force" in msg
            assert await etcd_pids(svc) == {"docker-node1": "", "docker-node2": ""}   # nothing started
            cluster = (await svc.etcd_apply(force=True)).cluster
            assert cluster.healthy and [m.name for m in cluster.members] == ["docker-node1", "docker-node2"]
            marker = await svc.pool.run("docker-node2", f"cat {data_dir}/overlay-tui.json", check=True)
            assert json.loads(marker.stdout)["token"] == lab.inventory.cluster.etcd_token
    finally:
        await asyncio.to_thread(stop_lab, name)


async def test_an_etcd_running_with_other_flags_is_refused():
    require_lab()
    name = lab_name("f")
    lab = await asyncio.to_thread(start_lab, name, 2)
    try:
        async with service(lab) as svc:
            pid = await svc.pool.start_detached("docker-node1", FOREIGN.format(dd="/var/lib/etcd/other.etcd"),
                                                "/var/log/etcd-foreign.log")
            with pytest.raises(EtcdError, match=rf"docker-node1: an etcd \(pid {pid}\) already runs there with other flags"):
                await svc.etcd_apply()
            assert (await etcd_pids(svc))["docker-node1"] == str(pid)        # not clobbered
    finally:
        await asyncio.to_thread(stop_lab, name)
