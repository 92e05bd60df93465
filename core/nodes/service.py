"""The nodes part of the live service: reachability, facts, commands, logs."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from core import checks
from core.access import WriteGuard
from core.dockerd.clients import DockerNodes
from core.errors import CommandTimeout, NodeUnreachable, OverlayError
from core.etcd.sizing import sizing
from core.model import CommandResult, Inventory, LogLines, NodeSpec, NodeStatus
from core.nodes.answers import ANSWER_TIMEOUT, GRACE, WHY_SILENT, as_they_answer
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
# It is below the console's 5 s refresh (core.nodes.answers), so a node that stops is down within two refreshes.
STATUS_TIMEOUT = ANSWER_TIMEOUT
#: seconds beyond its timeout the facts command may take before the node is called unreachable (the command's
#: own timeout fires first)
CONNECT_GRACE = 0.25
#: seconds the facts and Docker's info get at least once connected (a connect that took most of the timeout)
MIN_ROUND_TRIP = 1.0

LOG_SOURCES = checks.LOG_SOURCES    # (kept importable here: the record command reads it)


def _no_ssh_answer(spec: NodeSpec, limit: float) -> NodeUnreachable:
    return NodeUnreachable(spec.name, f"no answer over SSH from {spec.address} within {limit:g} s ({WHY_SILENT})")


def _seen(task: asyncio.Future) -> None:
    """Retrieve a background connect's outcome (the pool keeps it for its other callers)."""
    if not task.cancelled():
        task.exception()


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

    async def node_status(self, name: str, timeout: float | None = None) -> NodeStatus:
        """One node's status within about ``timeout`` s (STATUS_TIMEOUT): its SSH facts and Docker's info are
        asked at once."""
        spec = self.inventory.node(name)
        limit = min(spec.command_timeout, timeout or STATUS_TIMEOUT)
        t0 = time.monotonic()
        try:
            await self._connected(spec, limit)
        except OverlayError as e:
            return NodeStatus(name=spec.name, address=spec.address, reachable=False, error=str(e))
        left = max(limit - (time.monotonic() - t0), min(MIN_ROUND_TRIP, limit))
        facts_answer, info_answer = await asyncio.gather(self._facts(spec, left, limit), self._docker_info(spec, left),
                                                         return_exceptions=True)
        if isinstance(facts_answer, OverlayError):
            return NodeStatus(name=spec.name, address=spec.address, reachable=False, error=str(facts_answer))
        if isinstance(facts_answer, BaseException):
            raise facts_answer
        res, took = facts_answer
        latency = round(took * 1000, 1)
        facts = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        etcd_state = facts.get("etcd") or None
        if etcd_state != "running" and not sizing(self.inventory).is_member(spec.name):
            etcd_state = "client only"       # no member here by design (core.etcd.sizing): not a fault
        status = NodeStatus(name=spec.name, address=spec.address, reachable=True, latency_ms=latency,
                            hostname=facts.get("hostname") or None, kernel=facts.get("kernel") or None,
                            etcd_state=etcd_state,
                            etcd_last_error=facts.get("etcd_fatal", "").strip()[:300] or None)
        if isinstance(info_answer, TimeoutError):
            status.error = f"{spec.name}: the Docker daemon did not answer within {limit:g} s"
        elif isinstance(info_answer, OverlayError):
            status.error = str(info_answer)
        elif isinstance(info_answer, BaseException):
            raise info_answer
        else:
            status.docker_version, status.store_mode = info_answer.get("ServerVersion"), store_mode(info_answer)
        return status

    async def _connected(self, spec: NodeSpec, limit: float) -> None:
        """The node's SSH connection, waited for at most ``limit`` s. The connect itself is never cut short: it
        runs on to its own timeout, so the pool gives its failure to every caller queued behind it (status's
        etcd and Docker reads) instead of each of them connecting again, one after the other."""
        connecting = asyncio.ensure_future(self.pool.connection(spec))
        connecting.add_done_callback(_seen)      # also when this caller stops waiting (timeout, cancelled)
        try:
            await asyncio.wait_for(asyncio.shield(connecting), limit)
        except TimeoutError:
            raise _no_ssh_answer(spec, limit) from None

    async def _facts(self, spec: NodeSpec, left: float, limit: float) -> tuple[CommandResult, float]:
        """The facts script's result and its round trip, within ``left`` s (what is left of the node's ``limit``
        once connected); a node that hangs has its connection dropped (the next refresh connects afresh)."""
        t0 = time.monotonic()
        try:
            res = await asyncio.wait_for(self.pool.run(spec, FACTS_SCRIPT, timeout=left), left + CONNECT_GRACE)
        except CommandTimeout:
            self.pool.forget(spec)
            raise NodeUnreachable(spec.name, f"its status command did not finish within {limit:g} s (no answer over "
                                  f"SSH from {spec.address}: {WHY_SILENT})") from None
        except TimeoutError:
            self.pool.forget(spec)
            raise _no_ssh_answer(spec, limit) from None
        return res, time.monotonic() - t0

    async def _docker_info(self, spec: NodeSpec, limit: float) -> dict:
        return await asyncio.wait_for(self.docker.call(spec.name, lambda c: c.info()), limit)

    async def nodes(self) -> list[NodeStatus]:
        """Every node's status, gathered concurrently (one round trip, not N)."""
        return list(await asyncio.gather(*(self.node_status(n.name) for n in self.inventory.nodes)))

    def statuses(self, names: list[str] | None = None, timeout: float | None = None) -> AsyncIterator[NodeStatus]:
        """Each node's status (every node when ``names`` is None) as it answers; a silent node comes as down."""
        limit = timeout or STATUS_TIMEOUT
        specs = list(self.inventory.nodes) if names is None else [checks.node(self.inventory, n) for n in names]
        return as_they_answer(specs, lambda s: self.node_status(s.name, limit), limit + GRACE)

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
