"""The tutorial as a runbook: eight steps, each with plan, apply and verify.

A step is verified first; only a step that does not verify is applied (and then verified again),
so a second apply changes nothing. Progress comes out as :class:`RunbookEvent` objects.
"""
from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from core.errors import DockerError, OverlayError
from core.model import RunbookEvent, StepState


@dataclass(frozen=True)
class Step:
    """One runbook step: how to describe, check and do it (names of methods on the service)."""

    id: str
    title: str
    verify: str                 # "_verify_<id>" returns (ok, detail)
    apply: str | None = None    # "_apply_<id>" does the work; None: verification only
    settle: float = 0.0         # after applying, keep verifying up to this many seconds


STEPS: tuple[Step, ...] = (
    Step("ssh", "SSH reaches every node", "_verify_ssh"),
    Step("etcd", "etcd runs on every node", "_verify_etcd_running", "_apply_etcd"),
    Step("etcd-health", "the etcd cluster is healthy with every member", "_verify_etcd_health", "_apply_etcd"),
    Step("docker-store", "every dockerd uses the cluster store", "_verify_docker_store", "_apply_docker_store"),
    Step("network", "overlay network exists", "_verify_network", "_apply_network"),
    Step("converged", "the network is visible on every node with the same ID, scope global", "_verify_converged"),
    # The classic overlay learns peers by gossip: just after dockerd restarts with the store, a
    # probe may not resolve another node's container for some seconds (seen on the lab).
    Step("probes", "probes ping each other across every pair", "_verify_probes", "_apply_probes", settle=30.0),
    Step("vxlan", "VXLAN frames of the network are seen on the underlay", "_verify_vxlan"),
)

Check = tuple[bool | None, str]


class RunbookMixin:
    """`runbook_plan()` and `runbook_apply()` on top of the nodes, etcd, Docker and capture mixins."""

    force_etcd: bool = False
    settle_interval: float = 1.0      # seconds between verifications while a step settles

    def _step_title(self, step: Step) -> str:
        net = self.inventory.cluster.network
        return step.title.replace("overlay network", f"overlay network `{net}`").replace("the network", f"`{net}`")

    async def runbook_plan(self) -> list[StepState]:
        """Every step with the exact commands it would run on each node."""
        return [StepState(id=s.id, title=self._step_title(s), commands=await self._commands(s)) for s in STEPS]

    async def _commands(self, step: Step) -> list[str]:
        cluster, nodes = self.inventory.cluster, self.inventory.nodes
        if step.id == "ssh":
            return [f"{n.name}: ssh {n.ssh_target} hostname" for n in nodes]
        if step.id == "etcd":
            plans = await self.etcd_plan()
            return [f"{p.node}: {p.command}" for p in plans]
        if step.id == "etcd-health":
            return [f"{n.name}: etcdctl endpoint health" for n in nodes[:1]]
        if step.id == "docker-store":
            return [f"{c.node}: {c.command}" for c in await self.docker_store_plan()]
        if step.id == "network":
            subnet = f" --subnet {cluster.network_subnet}" if cluster.network_subnet else ""
            return [f"{nodes[0].name}: docker network create -d overlay{subnet} --attachable {shlex.quote(cluster.network)}"]
        if step.id == "converged":
            return [f"{n.name}: docker network ls --filter name={cluster.network}" for n in nodes]
        if step.id == "probes":
            cmds = [f"{n.name}: docker run -d --name probe-{n.name} --hostname probe-{n.name} --net {cluster.network} "
                    f"{cluster.probe_image} sleep 1000000" for n in nodes]
            cmds += [f"{a.name}: docker exec probe-{a.name} ping -c 3 probe-{b.name}" for a in nodes for b in nodes if a != b]
            return cmds
        if step.id == "vxlan":
            from core.capture_live import tcpdump_command

            return [f"{n.name}: {tcpdump_command(n.capture_interface or '<underlay>', cluster.vxlan_port)}"
                    for n in nodes]
        return []

    async def runbook_apply(self, states: list[StepState] | None = None) -> AsyncIterator[RunbookEvent]:
        """Verify each step; apply the ones that do not verify; stop at the first step that fails.

        ``states`` is a plan from :meth:`runbook_plan` to fill in (a fresh one when None).
        """
        self.require_writable("applying the runbook")
        states = states if states is not None else await self.runbook_plan()
        applied: set[str] = set()
        for step, state in zip(STEPS, states):
            state.running = True
            yield RunbookEvent(state, message="verifying")
            ok, detail = await self._check(step)
            if ok is False and step.apply:
                if step.apply in applied:
                    ok, detail = await self._check(step)
                else:
                    yield RunbookEvent(state, message=f"applying: {detail}")
                    try:
                        per_node = await getattr(self, step.apply)()
                        applied.add(step.apply)
                    except OverlayError as e:
                        state.running, state.ok, state.detail = False, False, str(e)
                        yield RunbookEvent(state, message="failed")
                        return
                    for node, message in per_node:
                        yield RunbookEvent(state, node=node, message=message)
                    ok, detail = await self._settle(step)
            elif ok and step.apply and step.apply not in applied:
                detail = f"{detail} (already done)"
            state.running, state.ok, state.detail = False, ok, detail
            yield RunbookEvent(state, message={True: "ok", False: "failed", None: "not available"}[ok])
            if ok is False:
                return

    async def runbook_verify(self) -> list[StepState]:
        """Verify every step without changing anything."""
        states = await self.runbook_plan()
        for step, state in zip(STEPS, states):
            state.ok, state.detail = await self._check(step)
        return states

    async def _settle(self, step: Step) -> Check:
        """Verify after an apply; a step that converges is given up to ``step.settle`` seconds."""
        t0 = time.monotonic()
        ok, detail = await self._check(step)
        while ok is False and time.monotonic() - t0 < step.settle:
            await asyncio.sleep(self.settle_interval)
            ok, detail = await self._check(step)
        waited = time.monotonic() - t0
        if ok and waited >= self.settle_interval:
            detail = f"{detail} (converged after {waited:.1f} s)"
        return ok, detail

    async def _check(self, step: Step) -> Check:
        verify: Callable[[], Awaitable[Check]] = getattr(self, step.verify)
        try:
            return await verify()
        except OverlayError as e:
            return False, str(e)

    # --- verification of each step -------------------------------------------------------
    async def _verify_ssh(self) -> Check:
        nodes = await self.nodes()
        bad = [n.error or f"{n.name}: unreachable" for n in nodes if not n.reachable]   # errors name their node
        if bad:
            return False, "; ".join(bad)
        return True, ", ".join(f"{n.name} ({n.hostname}, {n.latency_ms} ms)" for n in nodes)

    async def _verify_etcd_running(self) -> Check:
        nodes = await self.nodes()
        bad = [n.name for n in nodes if n.etcd_state != "running"]
        if bad:
            return False, f"etcd is not running on {', '.join(bad)}"
        return True, f"etcd runs on {', '.join(n.name for n in nodes)}"

    async def _verify_etcd_health(self) -> Check:
        cluster = await self.etcd_cluster()
        want = {n.name for n in self.inventory.nodes}
        have = {m.name for m in cluster.members if m.healthy}
        if cluster.healthy and want <= have:
            leader = next((m.name for m in cluster.members if m.leader), "?")
            return True, f"{len(cluster.members)} members healthy, leader {leader}"
        missing = sorted(want - have)
        return False, (cluster.error or f"unhealthy or missing members: {', '.join(missing) or 'none'}")

    async def _verify_docker_store(self) -> Check:
        changes = await self.docker_store_plan()
        bad = [f"{c.node}: {c.reason}" for c in changes if c.action != "none"]
        if bad:
            return False, "; ".join(bad)
        return True, ", ".join(f"{c.node} uses {c.want_store}" for c in changes)

    async def _network(self):
        name = self.inventory.cluster.network
        return next((n for n in await self.networks() if n.name == name), None)

    async def _verify_network(self) -> Check:
        net = await self._network()
        if net is None:
            return False, f"network {self.inventory.cluster.network} does not exist"
        vni = net.vni if net.vni is not None else "not allocated yet (the first container allocates it)"
        return True, f"{net.name} {net.id[:12]} driver {net.driver}, subnet {net.subnet}, VNI {vni}"

    async def _verify_converged(self) -> Check:
        net = await self._network()
        want = [n.name for n in self.inventory.nodes]
        if net is None:
            return False, f"network {self.inventory.cluster.network} does not exist"
        missing = [n for n in want if n not in net.nodes]
        if missing or net.scope != "global":
            return False, f"{net.name}: scope {net.scope}, not visible on {', '.join(missing) or '-'}"
        return True, f"{net.name} {net.id[:12]} scope global on {', '.join(want)}"

    async def _verify_probes(self) -> Check:
        results = await self.ping_matrix()
        if not results:
            return False, "no probes are running"
        bad = [f"{r.src}->{r.target} ({r.by}): {r.error or f'{r.loss:.0%} loss'}" for r in results if r.loss > 0 or r.error]
        pairs = len({(r.src, r.dst) for r in results})
        if bad:
            return False, "; ".join(bad)
        rtts = [r.rtt_ms for r in results if r.rtt_ms is not None]
        return True, f"{pairs} pairs by name and address, 0% loss, RTT avg {sum(rtts) / len(rtts):.2f} ms"

    async def _verify_vxlan(self) -> Check:
        try:
            from core.capture_verify import verify_vxlan
        except ImportError:
            return None, "not available: VXLAN verification comes with the capture feature"
        state = await verify_vxlan(self, self.inventory.cluster.network)
        return state.ok, state.detail

    # --- applying: each returns what it did per node, as (node, message) -----------------
    async def _apply_etcd(self) -> list[tuple[str, str]]:
        await self.etcd_apply(force=self.force_etcd)
        return [(a.node, f"etcd {a.kind}: {a.reason.removeprefix(a.node + ': ')}") for a in self.etcd_last_actions]

    async def _apply_docker_store(self) -> list[tuple[str, str]]:
        changes = await self.docker_store_apply()
        return [(c.node, f"{c.action}" + (f" in {c.seconds:.1f} s" if c.seconds else "") + f": {c.reason}")
                for c in changes]

    async def _apply_network(self) -> list[tuple[str, str]]:
        c = self.inventory.cluster
        res = await self.create_network(c.network, subnet=c.network_subnet, attachable=True)
        return [(node, f"{res.network} {res.id[:12]} " + (f"visible after {res.seconds * 1000:.0f} ms" if seen
                                                           else "not visible"))
                for node, seen in res.nodes.items()]

    async def _apply_probes(self, attempts: int = 3) -> list[tuple[str, str]]:
        """Start the probes (idempotent). Docker 20.10's classic store has been seen refusing one
        endpoint update just after the daemons joined it ("etcd cluster is unavailable ... network
        is unreachable" while the node itself answered), so a failed start is tried again, twice."""
        for attempt in range(1, attempts + 1):
            try:
                started = await self.start_probes(self.inventory.cluster.network)
            except DockerError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(2.0 * self.settle_interval)
                continue
            note = f" (attempt {attempt})" if attempt > 1 else ""
            return [(node, f"probe-{node} {how}{note}") for node, how in started.items()]
        raise AssertionError("attempts must be at least 1")
