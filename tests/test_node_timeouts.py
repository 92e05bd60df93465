"""A node whose SSH hangs costs its own short timeout (status, console rows), not the others'."""
from __future__ import annotations

import asyncio
import time

from core.access import WriteGuard
from core.errors import CommandTimeout, NodeUnreachable
from core.model import CommandResult, Inventory, NodeSpec
from core.nodes import service as node_service
from core.nodes.service import NodeService


class HangingPool:
    """node2's commands never answer (a link down under an open connection); the others answer at once."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    async def run(self, spec, command, *, timeout=None, check=False, input=None):
        """As SSHPool.run: the command's own timeout ends the wait (node2 would hang for an hour)."""
        try:
            await asyncio.wait_for(asyncio.sleep(3600 if spec.name == "n2" else 0), timeout)
        except TimeoutError:
            raise CommandTimeout(spec.name, f"`{command}` did not finish within {timeout:g} s") from None
        return CommandResult(spec.name, command, 0, "hostname=h\nkernel=k\netcd=running\n", "", 0.001)

    async def connection(self, spec):
        """Connected at once (the hang is in the command, under an open connection)."""

    def forget(self, node) -> None:
        self.forgotten.append(node.name if hasattr(node, "name") else node)


class InstantDocker:
    async def call(self, node, fn):
        return {"ServerVersion": "20.10.24", "ClusterStore": "etcd://x:2379"}


async def test_a_hanging_node_is_marked_down_after_its_own_timeout_and_its_connection_dropped(monkeypatch):
    monkeypatch.setattr(node_service, "STATUS_TIMEOUT", 0.3)
    nodes = tuple(NodeSpec(name=f"n{i}", address=f"198.18.0.{i}", command_timeout=30.0) for i in (1, 2, 3))
    pool = HangingPool()
    svc = NodeService(Inventory("inv.toml", nodes), pool, InstantDocker(), WriteGuard(False))  # type: ignore[arg-type]
    t0 = time.monotonic()
    statuses = await svc.nodes()
    took = time.monotonic() - t0
    assert took < 2.0, f"one hanging node held every row for {took:.1f} s"
    assert [(s.name, s.reachable) for s in statuses] == [("n1", True), ("n2", False), ("n3", True)]
    assert "did not finish within 0.3 s" in (statuses[1].error or "")
    assert pool.forgotten == ["n2"]                 # the next refresh connects afresh, with its connect timeout


class SlowConnectPool(HangingPool):
    """n2's connect takes 0.5 s and fails (a link down with no connection open); counts how connects end."""

    def __init__(self) -> None:
        super().__init__()
        self.connects: list[str] = []

    async def connection(self, spec):
        if spec.name != "n2":
            return None
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            self.connects.append("cancelled")
            raise
        self.connects.append("failed")
        raise NodeUnreachable("n2", "no answer from 198.18.0.2:22 within 0.5 s")


async def test_a_connect_outlasting_the_status_timeout_is_not_cut_short_and_the_other_rows_come_first(monkeypatch):
    """The row is down after its own timeout, but the connect runs on to its end (the pool then hands its
    failure to every caller queued behind it, instead of each connecting again, one after the other)."""
    monkeypatch.setattr(node_service, "STATUS_TIMEOUT", 0.1)
    nodes = tuple(NodeSpec(name=f"n{i}", address=f"198.18.0.{i}") for i in (1, 2, 3))
    pool = SlowConnectPool()
    svc = NodeService(Inventory("inv.toml", nodes), pool, InstantDocker(), WriteGuard(False))  # type: ignore[arg-type]
    got = [s async for s in svc.statuses()]
    assert [s.name for s in got] == ["n1", "n3", "n2"]
    assert not got[2].reachable and "n2: no answer over SSH from 198.18.0.2 within 0.1 s" in (got[2].error or "")
    for _ in range(200):                      # the connect goes on in the background to its own end
        if pool.connects:
            break
        await asyncio.sleep(0.01)
    assert pool.connects == ["failed"]
