"""The nodes part of the live service: reachability, facts, commands, logs."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from core import checks
from core.access import WriteGuard
from core.dockerd.clients import DockerNodes
from core.errors import CommandTimeout, OverlayError
from core.etcd.sizing import sizing
from core.model import CommandResult, Inventory, LogLines, NodeStatus
from core.ssh import SSHPool

# One round trip gathers the host's facts; each line is KEY=VALUE so a missing tool leaves a blank.
# Docker's facts come from the daemon itself (the SDK over the forwarded socket): a newer docker CLI
# on the host no longer knows the classic ClusterStore field.
FACTS_SCRIPT = (
    "echo hostname=$(hostname); echo kernel=$(uname -r); "
    "if pgrep -x etcd >/dev/null 2>&1; then echo etcd=running; "
    "elif command -v etcd >/dev/null 2>&1; then echo etcd=stopped; "
    # why it stopped: the last fatal (capnslog ` C | `, zap "fatal"/"panic") line of its log
    "echo etcd_fatal=$(tail -n 5000 /var/log/etcd.log 2>/dev/null | "
    "grep -a -E '\"level\":\"(fatal|panic)\"| C \\| |level=fatal|panic: ' | tail -n 1); "
    "else echo etcd=not installed; fi"
)

# A status answer that takes longer than this marks the node down (its connection is dropped and made again
# on the next refresh): a hung node must not hold its row, or the console, for the 30 s command timeout.
STATUS_TIMEOUT = 5.0

LOG_SOURCES = checks.LOG_SOURCES    # (kept importable here: the record command reads it)


def store_mode(info: dict) -> str:
    """How the daemon keeps network state, from its `docker info`."""
    store = info.get("ClusterStore") or ""
    if store:
        return "etcd (classic)" if store.startswith("etcd") else store
    if (info.get("Swarm") or {}).get("LocalNodeState") == "active":
        return "swarm"
    return "local"


class NodeService:
    """Node status, commands and log following."""

    def __init__(self, inventory: Inventory, pool: SSHPool, docker: DockerNodes, guard: WriteGuard) -> None:
        self.inventory, self.pool, self.docker, self.guard = inventory, pool, docker, guard

    async def node_status(self, name: str) -> NodeStatus:
        spec = self.inventory.node(name)
        limit = min(spec.command_timeout, STATUS_TIMEOUT)
        t0 = time.monotonic()
        try:
            res = await self.pool.run(spec, FACTS_SCRIPT, timeout=limit)
        except CommandTimeout as e:
            self.pool.forget(spec)
            return NodeStatus(name=spec.name, address=spec.address, reachable=False, error=str(e))
        except OverlayError as e:
            return NodeStatus(name=spec.name, address=spec.address, reachable=False, error=str(e))
        latency = round((time.monotonic() - t0) * 1000, 1)
        facts = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        etcd_state = facts.get("etcd") or None
        if etcd_state != "running" and not sizing(self.inventory).is_member(spec.name):
            etcd_state = "client only"       # no member here by design (core.etcd.sizing): not a fault
        status = NodeStatus(name=spec.name, address=spec.address, reachable=True, latency_ms=latency,
                            hostname=facts.get("hostname") or None, kernel=facts.get("kernel") or None,
                            etcd_state=etcd_state,
                            etcd_last_error=facts.get("etcd_fatal", "").strip()[:300] or None)
        try:
            info = await asyncio.wait_for(self.docker.call(spec.name, lambda c: c.info()), limit)
        except TimeoutError:
            status.error = f"{spec.name}: the Docker daemon did not answer within {limit:g} s"
        except OverlayError as e:
            status.error = str(e)
        else:
            status.docker_version, status.store_mode = info.get("ServerVersion"), store_mode(info)
        return status

    async def nodes(self) -> list[NodeStatus]:
        """Every node's status, gathered concurrently (one round trip, not N)."""
        return list(await asyncio.gather(*(self.node_status(n.name) for n in self.inventory.nodes)))

    async def run_command(self, node: str, command: str) -> CommandResult:
        self.guard.require("running commands on nodes")
        checks.command(command)
        return await self.pool.run(checks.node(self.inventory, node), command)

    async def follow_log(self, node: str, source: str) -> AsyncIterator[LogLines]:
        """Tail a node's etcd or dockerd log; lines arrive in batches (about 10 a second at most)."""
        path = checks.log_source(source)
        stream = await self.pool.stream(checks.node(self.inventory, node), f"tail -n 200 -F {path} 2>&1")
        buf = b""
        try:
            async for chunk in stream.chunks():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if lines:
                    yield LogLines(node, source, [ln.decode(errors="replace") for ln in lines])
        finally:
            await stream.stop()
