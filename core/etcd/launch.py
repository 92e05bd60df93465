"""Start (or adopt) the planned etcd members over SSH, then wait until the cluster is healthy.

Every node is inspected first (one round trip each, concurrently) and nothing is touched unless
no node refuses: a running etcd with other flags, or a data dir of another cluster, stops the
whole apply with a message naming the node and what was found (``force=True`` replaces/wipes).
Members start concurrently, detached, logging to /var/log/etcd.log on their node.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Awaitable, Callable

from core.errors import EtcdError, OverlayError
from core.etcd.decide import EtcdAction, decide, inspect_script, parse_inspection
from core.etcd.migrate import migrate
from core.etcd.plan import MARKER_NAME, EtcdMemberPlan, join_plan
from core.model import EtcdCluster

ClusterReader = Callable[[], Awaitable[EtcdCluster]]
Install = Callable[[EtcdMemberPlan], Awaitable[None]]      # e.g. copy the node's TLS certificates


async def decide_all(pool, plans: list[EtcdMemberPlan], force: bool) -> list[EtcdAction]:
    """Inspect every node concurrently and decide what to do on each."""
    results = await asyncio.gather(*(pool.run(p.node, inspect_script(p), check=True) for p in plans))
    return [decide(p, parse_inspection(r.stdout), force) for p, r in zip(plans, results)]


def _prepare_script(plan: EtcdMemberPlan, action: EtcdAction) -> str:
    dd = shlex.quote(plan.data_dir)
    parts = []
    if action.wipe:
        parts.append(f"rm -rf -- {dd}")
    parts.append(f"mkdir -p -m 700 {dd}")
    if action.write_marker:
        parts.append(f"printf '%s\\n' {shlex.quote(json.dumps(plan.marker()))} > {shlex.quote(plan.marker_path)}")
    return " && ".join(parts)


async def _carry_out(pool, plan: EtcdMemberPlan, action: EtcdAction) -> None:
    if action.kind == "adopt":
        if action.write_marker:
            await pool.run(plan.node, _prepare_script(plan, action), check=True)
        return
    for unit in action.stop_units:          # a packaged etcd.service would come back if only killed
        await pool.run(plan.node, f"systemctl stop {shlex.quote(unit)}", check=True)
    for pid in action.stop_pids:
        await pool.kill(plan.node, pid)
    await pool.run(plan.node, _prepare_script(plan, action), check=True)
    action.pid = await pool.start_detached(plan.node, plan.command, plan.log)


async def log_tail(pool, plan: EtcdMemberPlan, lines: int = 8) -> str:
    """The last lines of the member's log, without etcd's harmless warning about our marker file."""
    try:
        res = await pool.run(plan.node, f"tail -n {lines + 4} {shlex.quote(plan.log)}", timeout=5)
        kept = [ln for ln in res.stdout.strip().splitlines() if MARKER_NAME not in ln]
        return "\n".join(kept[-lines:]) or "(log is empty)"
    except OverlayError as e:
        return f"(cannot read {plan.log}: {e})"


async def _dead(pool, plans: list[EtcdMemberPlan], actions: list[EtcdAction]) -> list[EtcdMemberPlan]:
    async def gone(plan: EtcdMemberPlan, action: EtcdAction) -> bool:
        if action.pid is None:
            return False
        res = await pool.run(plan.node, f"kill -0 {int(action.pid)}", timeout=5)
        return not res.ok
    flags = await asyncio.gather(*(gone(p, a) for p, a in zip(plans, actions)))
    return [p for p, dead in zip(plans, flags) if dead]


def _ready(cluster: EtcdCluster, plans: list[EtcdMemberPlan]) -> list[str]:
    """Planned nodes whose member is not yet healthy (empty: ready)."""
    healthy = {m.name for m in cluster.members if m.healthy}
    has_leader = any(m.leader for m in cluster.members)
    waiting = [p.node for p in plans if p.node not in healthy]
    if not waiting and (not has_leader or not cluster.healthy):
        return [p.node for p in plans]
    return waiting


async def wait_healthy(pool, plans: list[EtcdMemberPlan], actions: list[EtcdAction], read: ClusterReader,
                       timeout: float = 40.0) -> EtcdCluster:
    """Poll until every planned member is healthy with a leader; name the laggards on failure."""
    deadline = time.monotonic() + timeout
    checks = 0
    while True:
        cluster = await read()
        waiting = _ready(cluster, plans)
        if not waiting:
            return cluster
        checks += 1
        dead = await _dead(pool, plans, actions) if checks % 3 == 0 else []
        if dead or time.monotonic() > deadline:
            bad = dead or [p for p in plans if p.node in waiting]
            what = "exited" if dead else f"did not become healthy within {timeout:g} s"
            tails = await asyncio.gather(*(log_tail(pool, p) for p in bad))
            detail = "\n".join(f"--- {p.node}: {p.log} (last lines) ---\n{t}" for p, t in zip(bad, tails))
            raise EtcdError(f"etcd on {', '.join(p.node for p in bad)} {what} "
                            f"({'; '.join(cluster.summary[-2:])})\n{detail}")
        await asyncio.sleep(0.5)


MemberAdder = Callable[[str], Awaitable[None]]


async def apply_cluster(pool, plans: list[EtcdMemberPlan], read: ClusterReader, *, force: bool = False,
                        timeout: float = 40.0, install: Install | None = None,
                        add_member: MemberAdder | None = None) -> tuple[list[EtcdAction], EtcdCluster]:
    """Adopt or start every member (refusing to clobber), then wait for a healthy cluster.

    ``install`` runs on every node once nothing refused, before any member starts (certificates).
    A planned member that is new (no data dir) while the cluster already runs joins it: the member-add
    call first, then etcd with ``--initial-cluster-state existing`` (one at a time, each healthy before
    the next, so the cluster keeps its quorum).
    """
    actions = await decide_all(pool, plans, force)
    refused = [a.reason for a in actions if a.kind == "refuse"]
    if refused:
        raise EtcdError("etcd not started, nothing was changed:\n" + "\n".join(refused))
    if install is not None:
        await asyncio.gather(*(install(p) for p in plans))
    if any(a.kind == "migrate" for a in actions):          # plaintext <-> TLS: see core.etcd.migrate
        await migrate(pool, plans, actions, read, lambda p: log_tail(pool, p), timeout)
        return actions, await wait_healthy(pool, plans, actions, read, timeout)
    joiners: list[int] = []
    fresh = [i for i, a in enumerate(actions) if a.kind == "start" and a.write_marker and not a.wipe]
    if fresh and add_member is not None:
        running = await read()
        if any(m.id for m in running.members):            # a cluster answers (it lists members): the new ones join it
            joiners = fresh
    first = [i for i in range(len(plans)) if i not in joiners]
    await asyncio.gather(*(_carry_out(pool, plans[i], actions[i]) for i in first))
    cluster = await wait_healthy(pool, [plans[i] for i in first], [actions[i] for i in first], read, timeout)
    for i in joiners:
        assert add_member is not None
        cluster = await read()
        peer = _peer(plans[i])
        if not any(peer in m.peer_urls for m in cluster.members):   # an earlier try may have added it already
            await add_member(peer)
        existing = [(m.name or plans[i].node, m.peer_urls[0]) for m in cluster.members if m.id and m.peer_urls]
        plans[i] = join_plan(plans[i], existing)
        actions[i].reason = f"{plans[i].node}: joining the running cluster (member added, state existing)"
        await _carry_out(pool, plans[i], actions[i])
        cluster = await wait_healthy(pool, plans[:i + 1], actions[:i + 1], read, timeout)
    if joiners:
        cluster = await wait_healthy(pool, plans, actions, read, timeout)
    return actions, cluster


def _peer(plan: EtcdMemberPlan) -> str:
    argv = list(plan.argv)
    return argv[argv.index("--initial-advertise-peer-urls") + 1]
