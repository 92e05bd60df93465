"""The tutorial's eight steps, each an object: id, title, and how to plan, verify and apply it.

Every function here takes the :class:`core.runbook.runbook.Runbook` running it (its ``target`` is
the narrow :class:`RunbookTarget`, its ``inventory`` the cluster's) and returns plain values:
``plan`` the exact commands per node, ``verify`` (ok, one-sentence detail), ``apply`` what it did per
node as (node, message).
"""
from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.capture.remote import tcpdump_command
from core.capture.verify import verify_vxlan
from core.dockerd.store import DockerStoreChange
from core.errors import DockerError
from core.etcd.plan import EtcdMemberPlan, join_plan
from core.etcd.sizing import sizing
from core.etcd.tls import ENV_FILE, NODE_PKI_DIR
from core.model import ConvergeResult, EtcdCluster, FrameBatch, Inventory, NetworkInfo, NodeStatus, PingResult

if TYPE_CHECKING:
    from core.etcd.service import EtcdApplied
    from core.runbook.runbook import Runbook

Check = tuple[bool | None, str]


class RunbookTarget(Protocol):
    """What the runbook needs of the cluster: the live service provides it, a test may fake it."""

    inventory: Inventory

    async def nodes(self) -> list[NodeStatus]: ...
    async def etcd_cluster(self) -> EtcdCluster: ...
    async def etcd_plan(self) -> list[EtcdMemberPlan]: ...
    async def etcd_apply(self, force: bool = False, timeout: float = 40.0) -> EtcdApplied: ...
    async def docker_store_plan(self) -> list[DockerStoreChange]: ...
    async def docker_store_apply(self) -> list[DockerStoreChange]: ...
    async def networks(self) -> list[NetworkInfo]: ...
    async def create_network(self, name: str, subnet: str | None = None, attachable: bool = True,
                             node: str | None = None) -> ConvergeResult: ...
    async def start_probes(self, network: str, again: frozenset[str] = frozenset()) -> dict[str, str]: ...
    async def ping_matrix(self) -> list[PingResult]: ...
    def capture(self, nodes: list[str]) -> AsyncIterator[FrameBatch]: ...


Plan = Callable[["Runbook"], Awaitable[list[str]]]
Verify = Callable[["Runbook"], Awaitable[Check]]
Apply = Callable[["Runbook"], Awaitable[list[tuple[str, str]]]]


@dataclass(frozen=True)
class Step:
    """One runbook step. Two steps may share one ``apply`` (it then runs once per runbook apply)."""

    id: str
    title: str
    plan: Plan
    verify: Verify
    apply: Apply | None = None
    settle: float = 0.0         # after applying, keep verifying up to this many seconds

    def title_for(self, network: str) -> str:
        return self.title.replace("overlay network", f"overlay network `{network}`").replace("the network", f"`{network}`")


# --- plans: the exact commands per node ---------------------------------------------------
async def plan_ssh(rb: Runbook) -> list[str]:
    return [f"{n.name}: ssh {shlex.quote(n.ssh_target)} hostname" for n in rb.inventory.nodes]


async def plan_etcd(rb: Runbook) -> list[str]:
    size = sizing(rb.inventory)
    lines = [f"members: {', '.join(size.member_names)} ({size.why})"]
    if size.clients:
        lines.append(f"no etcd on {', '.join(n.name for n in size.clients)}: their dockerd uses the members' endpoints")
    plans = await rb.target.etcd_plan()
    cluster = await rb.target.etcd_cluster()
    running = [(m.name, m.peer_urls[0]) for m in cluster.members if m.id and m.name and m.peer_urls]
    for p in plans:
        if p.tls:
            lines.append(f"{p.node}: install the cluster CA and the node's server, peer and client certificates in "
                         f"{NODE_PKI_DIR} (keys 0600) and {ENV_FILE}")
        if running and p.node not in {name for name, _ in running}:
            lines.append(f"{p.node}: joins the running cluster: added by etcd's member-add API, then started with "
                         "--initial-cluster-state existing (if its data dir is fresh)")
            p = join_plan(p, running)
        lines.append(f"{p.node}: {p.command}")
    planned = {p.node for p in plans}
    for name, _ in running:
        if name not in planned:
            lines.append(f"warning: {name} holds a member of the running cluster but is not planned to hold one; "
                         f"the apply leaves that member as it is (`overlay-tui node remove {name}` takes the node out, "
                         "quorum kept)")
    return lines + ([f"warning: {cluster.warning}"] if cluster.warning else [])   # plaintext: the store is open


async def plan_etcd_health(rb: Runbook) -> list[str]:
    env = f". {ENV_FILE} && " if rb.inventory.cluster.etcd_tls else ""      # endpoint and certificates
    return [f"{n.name}: {env}etcdctl endpoint health" for n in sizing(rb.inventory).members[:1]]


async def plan_docker_store(rb: Runbook) -> list[str]:
    return [f"{c.node}: {c.command}" for c in await rb.target.docker_store_plan()]


async def plan_network(rb: Runbook) -> list[str]:
    c = rb.inventory.cluster
    subnet = f" --subnet {shlex.quote(c.network_subnet)}" if c.network_subnet else ""
    return [f"{rb.inventory.nodes[0].name}: docker network create -d overlay{subnet} --attachable "
            f"{shlex.quote(c.network)}"]


async def plan_converged(rb: Runbook) -> list[str]:
    name = shlex.quote(f"name={rb.inventory.cluster.network}")
    return [f"{n.name}: docker network ls --filter {name}" for n in rb.inventory.nodes]


async def plan_probes(rb: Runbook) -> list[str]:
    c, nodes = rb.inventory.cluster, rb.inventory.nodes
    q = shlex.quote
    cmds = [f"{n.name}: docker run -d --name {q('probe-' + n.name)} --hostname {q('probe-' + n.name)} "
            f"--net {q(c.network)} {q(c.probe_image)} sleep 1000000" for n in nodes]
    cmds += [f"{a.name}: docker exec {q('probe-' + a.name)} ping -c 3 {q('probe-' + b.name)}"
             for a in nodes for b in nodes if a != b]
    return cmds


async def plan_vxlan(rb: Runbook) -> list[str]:
    port = rb.inventory.cluster.vxlan_port
    return [f"{n.name}: {tcpdump_command(n.capture_interface or 'UNDERLAY-INTERFACE', port)}"
            for n in rb.inventory.nodes]


# --- verification -------------------------------------------------------------------------
async def verify_ssh(rb: Runbook) -> Check:
    nodes = await rb.target.nodes()
    bad = [n.error or f"{n.name}: unreachable" for n in nodes if not n.reachable]   # errors name their node
    if bad:
        return False, "; ".join(bad)
    return True, ", ".join(f"{n.name} ({n.hostname}, {n.latency_ms} ms)" for n in nodes)


async def verify_etcd_running(rb: Runbook) -> Check:
    members = sizing(rb.inventory).member_names
    nodes = [n for n in await rb.target.nodes() if n.name in members]
    bad = [n.name for n in nodes if n.etcd_state != "running"]
    if bad:
        return False, f"etcd is not running on {', '.join(bad)}"
    if rb.inventory.cluster.etcd_tls:
        cluster = await rb.target.etcd_cluster()
        if cluster.tls is False or cluster.warning:   # plaintext of an earlier apply (--force), or certificates due
            return False, cluster.warning or "etcd runs in plaintext although the inventory wants TLS"
    return True, f"etcd runs on {', '.join(n.name for n in nodes)}"


async def verify_etcd_health(rb: Runbook) -> Check:
    cluster = await rb.target.etcd_cluster()
    want = set(sizing(rb.inventory).member_names)
    have = {m.name for m in cluster.members if m.healthy}
    if cluster.healthy and want <= have:
        leader = next((m.name for m in cluster.members if m.leader), "?")
        return True, f"{len(cluster.members)} members healthy, leader {leader}"
    missing = sorted(want - have)
    return False, (cluster.error or f"unhealthy or missing members: {', '.join(missing) or 'none'}")


async def verify_docker_store(rb: Runbook) -> Check:
    changes = await rb.target.docker_store_plan()
    bad = [f"{c.node}: {c.reason}" for c in changes if c.action != "none"]
    if bad:
        return False, "; ".join(bad)
    return True, ", ".join(f"{c.node} uses {c.want_store}" for c in changes)


async def _network(rb: Runbook) -> NetworkInfo | None:
    name = rb.inventory.cluster.network
    return next((n for n in await rb.target.networks() if n.name == name), None)


async def verify_network(rb: Runbook) -> Check:
    net = await _network(rb)
    if net is None:
        return False, f"network {rb.inventory.cluster.network} does not exist"
    vni = net.vni if net.vni is not None else "not allocated yet (the first container allocates it)"
    return True, f"{net.name} {net.id[:12]} driver {net.driver}, subnet {net.subnet}, VNI {vni}"


async def verify_converged(rb: Runbook) -> Check:
    net = await _network(rb)
    want = [n.name for n in rb.inventory.nodes]
    if net is None:
        return False, f"network {rb.inventory.cluster.network} does not exist"
    missing = [n for n in want if n not in net.nodes]
    if missing or net.scope != "global":
        return False, f"{net.name}: scope {net.scope}, not visible on {', '.join(missing) or '-'}"
    return True, f"{net.name} {net.id[:12]} scope global on {', '.join(want)}"


def names_unknown(results: list[PingResult]) -> list[str]:
    """Nodes whose probe reaches every other by address but resolves none of their names: that node's Docker
    has not learned the other hosts' containers from the store (its embedded DNS has no record of them)."""
    blind = []
    for src in dict.fromkeys(r.src for r in results):
        names = [r for r in results if r.src == src and r.by == "name"]
        addresses = [r for r in results if r.src == src and r.by == "address"]
        if (names and addresses and all(r.error and "bad address" in r.error for r in names)
                and all(not r.error and r.loss == 0 for r in addresses)):
            blind.append(src)
    return blind


async def verify_probes(rb: Runbook) -> Check:
    results = await rb.target.ping_matrix()
    if not results:
        return False, "no probes are running"
    bad = [f"{r.src}->{r.target} ({r.by}): {r.error or f'{r.loss:.0%} loss'}" for r in results if r.loss > 0 or r.error]
    pairs = len({(r.src, r.dst) for r in results})
    if bad:
        blind = names_unknown(results)
        return False, "; ".join(bad) + "".join(
            f". {n}'s probe reaches every other by address but resolves none of their names: its dockerd has not "
            f"learned the other hosts' containers from the store (their names are not in its DNS); restart Docker on "
            f"{n}, then apply again"
            for n in blind)
    rtts = [r.rtt_ms for r in results if r.rtt_ms is not None]
    return True, f"{pairs} pairs by name and address, 0% loss, RTT avg {sum(rtts) / len(rtts):.2f} ms"


async def verify_frames(rb: Runbook) -> Check:
    state = await verify_vxlan(rb.target, rb.inventory.cluster.network)
    return state.ok, state.detail


# --- applying -----------------------------------------------------------------------------
async def apply_etcd(rb: Runbook) -> list[tuple[str, str]]:
    done = await rb.target.etcd_apply(force=rb.force_etcd)
    return [(a.node, f"etcd {a.kind}: {a.reason.removeprefix(a.node + ': ')}") for a in done.actions]


async def apply_docker_store(rb: Runbook) -> list[tuple[str, str]]:
    changes = await rb.target.docker_store_apply()
    return [(c.node, f"{c.action}" + (f" in {c.seconds:.1f} s" if c.seconds else "") + f": {c.reason}")
            for c in changes]


async def apply_network(rb: Runbook) -> list[tuple[str, str]]:
    c = rb.inventory.cluster
    res = await rb.target.create_network(c.network, subnet=c.network_subnet, attachable=True)
    return [(node, f"{res.network} {res.id[:12]} " + (f"visible after {res.seconds * 1000:.0f} ms" if seen
                                                       else "not visible"))
            for node, seen in res.nodes.items()]


async def apply_probes(rb: Runbook, attempts: int = 3) -> list[tuple[str, str]]:
    """Start the probes (idempotent). Docker 20.10's classic store has been seen refusing one
    endpoint update just after the daemons joined it ("etcd cluster is unavailable ... network
    is unreachable" while the node itself answered), so a failed start is tried again, twice.

    A running probe whose node resolves none of the others' names (:func:`names_unknown`) is started again:
    Docker learns other hosts' container names through a watch of the store that a node sets up when its
    first container joins the network, and a watch that ended (its store client gave up on it) is not made
    again while that container stays. When the probe is that node's only container on the network, starting it
    anew makes the watch anew; otherwise the probe step says to restart Docker there."""
    again = frozenset(names_unknown(await rb.target.ping_matrix()))
    for attempt in range(1, attempts + 1):
        try:
            started = await rb.target.start_probes(rb.inventory.cluster.network, again)
        except DockerError:
            if attempt == attempts:
                raise
            await asyncio.sleep(2.0 * rb.settle_interval)
            continue
        note = f" (attempt {attempt})" if attempt > 1 else ""
        why = " (it resolved none of the other probes' names)"
        return [(node, f"probe-{node} {how}{note}{why if node in again else ''}") for node, how in started.items()]
    raise ValueError("attempts must be at least 1")


STEPS: tuple[Step, ...] = (
    Step("ssh", "SSH reaches every node", plan_ssh, verify_ssh),
    Step("etcd", "etcd runs on every member node", plan_etcd, verify_etcd_running, apply_etcd),
    Step("etcd-health", "the etcd cluster is healthy with every member", plan_etcd_health, verify_etcd_health,
         apply_etcd),
    Step("docker-store", "every dockerd uses the cluster store", plan_docker_store, verify_docker_store,
         apply_docker_store),
    Step("network", "overlay network exists", plan_network, verify_network, apply_network),
    Step("converged", "the network is visible on every node with the same ID, scope global", plan_converged,
         verify_converged),
    # The classic overlay learns peers by gossip: just after dockerd restarts with the store, a
    # probe may not resolve another node's container for some seconds (seen on the lab).
    Step("probes", "probes ping each other across every pair", plan_probes, verify_probes, apply_probes,
         settle=30.0),
    Step("vxlan", "VXLAN frames of the network are seen on the underlay", plan_vxlan, verify_frames),
)
