"""RecordedService: the Service over recorded lab state, with in-memory mutations."""
from __future__ import annotations

import asyncio
import json

import pytest
from tui_fixtures import STATE

from core.errors import DockerError, ReadOnlyError, UsageError
from core.model import NodeStatus
from core.recorded.service import RecordedService, state_to_json


@pytest.fixture
def svc() -> RecordedService:
    return RecordedService.load(STATE)


async def test_reads_return_the_recorded_dataclasses(svc):
    nodes = await svc.nodes()
    assert [n.name for n in nodes] == [n.name for n in svc.inventory.nodes]
    assert all(isinstance(n, NodeStatus) and n.reachable for n in nodes)
    cluster = await svc.etcd_cluster()
    assert cluster.healthy and sum(m.leader for m in cluster.members) == 1
    nets = {n.name: n for n in await svc.networks()}
    assert nets["demo"].driver == "overlay" and nets["demo"].vni == 256 and nets["demo"].containers
    v2 = await svc.etcd_keys("v2", "/docker/network")
    assert v2 and all(k.key.startswith("/docker/network") and k.source == "v2" for k in v2)
    assert any(json.loads(k.value).get("subnets") for k in v2 if k.value and "/overlay/network/" in k.key)
    assert len(await svc.ping_matrix()) == 12
    assert [s.id for s in await svc.runbook_plan()][0] == "ssh"
    assert (await svc.names()).networks[256] == "demo"


async def test_create_and_delete_change_the_state_and_tell_watchers(svc):
    events = []

    async def watch():
        async for ev in svc.watch():
            events.append(ev)

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    res = await svc.create_network("blue", subnet="198.19.9.0/24")
    assert res.nodes == {n.name: True for n in svc.inventory.nodes}
    again = RecordedService.load(STATE)
    assert (await again.create_network("blue")).id == res.id  # deterministic id
    blue = next(n for n in await svc.networks() if n.name == "blue")
    assert blue.vni == 258 and blue.scope == "global" and blue.subnet == "198.19.9.0/24"
    with pytest.raises(UsageError, match="already exists"):
        await svc.create_network("blue")
    await svc.delete_network("blue")
    assert "blue" not in [n.name for n in await svc.networks()]
    with pytest.raises(DockerError, match="active endpoints"):
        await svc.delete_network("demo")
    await asyncio.sleep(0)
    task.cancel()
    assert [(e.kind, e.action) for e in events] == [("network", "put"), ("network", "delete")]


async def test_read_only_refuses_every_mutation():
    svc = RecordedService.load(STATE, read_only=True)
    with pytest.raises(ReadOnlyError):
        await svc.create_network("x")
    with pytest.raises(ReadOnlyError):
        await svc.delete_network("web")
    with pytest.raises(ReadOnlyError):
        await svc.run_command("docker-node1", "true")
    with pytest.raises(ReadOnlyError):
        async for _ in svc.runbook_apply():
            pass


async def test_runbook_apply_replays_events_and_commands_and_logs(svc):
    events = [e async for e in svc.runbook_apply()]
    assert events[0].step.running and events[-1].step.id == "vxlan"
    assert all(e.step.ok for e in events if e.message == "ok")
    res = await svc.run_command("docker-node1", "docker network ls")
    assert res.ok and "demo" in res.stdout
    other = await svc.run_command("docker-node2", "uptime")
    assert "no output was recorded" in other.stdout
    lines = [ln async for batch in svc.follow_log("docker-node1", "etcd") for ln in batch.lines]
    assert any("etcdserver" in ln for ln in lines)
    with pytest.raises(UsageError):
        async for _ in svc.follow_log("docker-node1", "syslog"):
            pass


def test_bad_state_files_are_named(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match=str(bad)):
        RecordedService.load(bad)
    bad.write_text('{"format": 99}')
    with pytest.raises(UsageError, match="record it again"):
        RecordedService.load(bad)
    with pytest.raises(UsageError, match="cannot read"):
        RecordedService.load(tmp_path / "missing.json")


async def test_recorded_errors_are_raised_again(tmp_path):
    state = json.loads(STATE.read_text())
    state["errors"] = {"etcd": "docker-node1: etcd did not answer"}
    svc = RecordedService(state)
    with pytest.raises(Exception, match="did not answer"):
        await svc.etcd_cluster()


def test_state_to_json_round_trips_dataclasses():
    svc = RecordedService.load(STATE)
    nodes = asyncio.run(svc.nodes())
    text = state_to_json({"inventory": {"path": "x", "nodes": [], "cluster": {}}, "nodes": nodes})
    again = RecordedService(json.loads(text))
    assert asyncio.run(again.nodes()) == nodes
