"""Move this cluster's members between plaintext and TLS on their data dirs, keeping the data.

etcd keeps each member's peer URLs in the cluster membership, and a member restarted with other
peer URLs is not reachable under the stored ones (``--initial-*`` flags only count for a new data
dir). With peer client-certificate auth a rolling change cannot work either (a plaintext member has
no certificate to dial a TLS peer). So, as etcd's disaster-recovery guide does:

1. stop every member;
2. start the first member that was running (else the first that holds data) alone, with the new
   flags and ``--force-new-cluster`` (its data, Docker's v2 keys included, is kept; the others leave
   the membership), set its peer URL with ``etcdctl member update``, and restart it with exactly
   the planned command;
3. for each other node in turn: ``etcdctl member add`` it, start it from an empty data dir with
   ``--initial-cluster-state existing`` (it receives the data from the cluster), then restart it with
   exactly the planned command, so the next apply adopts every member as planned.

Only what :func:`core.etcd.decide.decide` marked "migrate" (with --force, after the operator
confirmed) gets here.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Awaitable, Callable

from core.errors import EtcdError
from core.etcd.decide import EtcdAction
from core.etcd.plan import EtcdMemberPlan, parse_flags
from core.etcd.tls import etcdctl_command
from core.model import EtcdCluster

ClusterReader = Callable[[], Awaitable[EtcdCluster]]
Tail = Callable[[EtcdMemberPlan], Awaitable[str]]


def _peer_url(plan: EtcdMemberPlan) -> str:
    return parse_flags(plan.argv)["--initial-advertise-peer-urls"]


def joining_argv(plan: EtcdMemberPlan, members: list[EtcdMemberPlan]) -> tuple[str, ...]:
    """The planned argv of a member joining ``members`` (itself included): state existing, those peers only."""
    initial = ",".join(f"{m.node}={_peer_url(m)}" for m in members)
    out = list(plan.argv)
    for flag, value in (("--initial-cluster", initial), ("--initial-cluster-state", "existing")):
        out[out.index(flag) + 1] = value
    return tuple(out)


async def _wait(read: ClusterReader, plan: EtcdMemberPlan, count: int, tail: Tail, timeout: float) -> EtcdCluster:
    """Until ``count`` members are listed and ``plan``'s member is healthy under a leader."""
    deadline = time.monotonic() + timeout
    while True:
        cluster = await read()
        me = next((m for m in cluster.members if m.name == plan.node), None)
        if len(cluster.members) == count and me and me.healthy and any(m.leader for m in cluster.members):
            return cluster
        if time.monotonic() > deadline:
            raise EtcdError(f"migrating etcd: {plan.node} did not become healthy within {timeout:g} s "
                            f"({'; '.join(cluster.summary[-2:])})\n--- {plan.node}: {plan.log} (last lines) ---\n"
                            f"{await tail(plan)}")
        await asyncio.sleep(0.5)


async def _etcdctl(pool, via: EtcdMemberPlan, args: str, timeout: float = 30.0) -> str:
    """Run etcdctl on ``via``; "unhealthy cluster" is waited out: etcd refuses a member change until
    every member has been connected for 5 s (its strict reconfiguration check)."""
    deadline = time.monotonic() + timeout
    while True:
        res = await pool.run(via.node, etcdctl_command(via.client_url, via.tls, args), timeout=20)
        if res.ok:
            return res.stdout
        said = (res.stderr or res.stdout).strip()
        if "unhealthy cluster" not in said or time.monotonic() > deadline:
            last = said.splitlines()[-1] if said else f"exit {res.exit_status}"
            raise EtcdError(f"migrating etcd: `etcdctl {args}` on {via.node} failed: {last}")
        await asyncio.sleep(1.0)


async def _restart(pool, plan: EtcdMemberPlan, pid: int, argv: tuple[str, ...]) -> int:
    await pool.kill(plan.node, pid)
    return await pool.start_detached(plan.node, shlex.join(argv), plan.log)


def _prepare(plan: EtcdMemberPlan, wipe: bool) -> str:
    dd = shlex.quote(plan.data_dir)
    parts = [f"rm -rf -- {dd}"] if wipe else []
    parts += [f"mkdir -p -m 700 {dd}",
              f"printf '%s\\n' {shlex.quote(json.dumps(plan.marker()))} > {shlex.quote(plan.marker_path)}"]
    return " && ".join(parts)


async def migrate(pool, plans: list[EtcdMemberPlan], actions: list[EtcdAction], read: ClusterReader, tail: Tail,
                  timeout: float = 40.0) -> None:
    """Carry the cluster over to the plans' transport (see the module docstring); pids land in ``actions``."""
    for plan, action in zip(plans, actions):            # 1. every member stops
        for unit in action.stop_units:
            await pool.run(plan.node, f"systemctl stop {shlex.quote(unit)}", check=True)
        for pid in action.stop_pids + ([action.pid] if action.kind == "adopt" and action.pid else []):
            await pool.kill(plan.node, pid)
    migrating = [i for i, a in enumerate(actions) if a.kind == "migrate"]
    # the seed keeps the data: a member that was running (it has the latest), else the first stopped one
    seed_i = next((i for i in migrating if actions[i].stop_pids or actions[i].stop_units), migrating[0])
    seed, seed_action = plans[seed_i], actions[seed_i]
    await pool.run(seed.node, _prepare(seed, wipe=False), check=True)      # 2. the seed, alone
    pid = await pool.start_detached(seed.node, shlex.join(seed.argv + ("--force-new-cluster",)), seed.log)
    cluster = await _wait(read, seed, 1, tail, timeout)
    member = cluster.members[0]
    if member.peer_urls != [_peer_url(seed)]:
        await _etcdctl(pool, seed, f"member update {shlex.quote(member.id)} --peer-urls={shlex.quote(_peer_url(seed))}")
    seed_action.pid = await _restart(pool, seed, pid, seed.argv)
    await _wait(read, seed, 1, tail, timeout)
    joined = [seed]
    for plan, action in zip(plans, actions):            # 3. the others rejoin, one by one
        if plan is seed:
            continue
        await pool.run(plan.node, _prepare(plan, wipe=True), check=True)
        await _etcdctl(pool, seed, f"member add {shlex.quote(plan.node)} --peer-urls={shlex.quote(_peer_url(plan))}")
        members = [p for p in plans if p in joined or p is plan]
        pid = await pool.start_detached(plan.node, shlex.join(joining_argv(plan, members)), plan.log)
        await _wait(read, plan, len(members), tail, timeout)
        action.pid = await _restart(pool, plan, pid, plan.argv)
        await _wait(read, plan, len(members), tail, timeout)
        joined.append(plan)
