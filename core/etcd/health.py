"""Turn per-endpoint probes into an :class:`EtcdCluster` with `etcdctl cluster-health` lines.

Pure: :func:`assemble_cluster` takes what each endpoint answered (see :mod:`core.etcd.read`)
and decides each member's health, the leader and the summary, so it is tested offline.
"""
from __future__ import annotations

from collections import Counter

from core.model import EtcdCluster, EtcdMember

UNKNOWN = "unknown (node unreachable over SSH)"


def _find_probe(member: EtcdMember, probes):
    mid = int(member.id, 16) if member.id else None
    for p in probes:
        if p.member_id is not None and p.member_id == mid:
            return p
    for p in probes:
        if p.endpoint.url in member.client_urls:
            return p
    return None


def assemble_cluster(probes, endpoints) -> EtcdCluster:
    """Members with status and health; healthy when every member answers and there is a leader."""
    listed = next((p.members for p in probes if p.members), None)
    if not listed:
        return _unavailable(probes, endpoints)
    order = {ep.url: i for i, ep in enumerate(endpoints)}
    listed = sorted(listed, key=lambda m: min((order.get(u, len(order)) for u in m.client_urls), default=len(order)))
    votes = Counter(p.leader_id for p in probes if p.healthy and p.leader_id)
    leader_id = votes.most_common(1)[0][0] if votes else None
    members, summary = [], []
    for m in listed:
        m = EtcdMember(id=m.id, name=m.name, peer_urls=list(m.peer_urls), client_urls=list(m.client_urls))
        p = _find_probe(m, probes)
        if not m.client_urls:
            m.error = "not started yet (no published client URLs)"
            summary.append(f"member {m.id} is unreachable: no available published client urls")
        elif p is None:
            m.error = "not probed"
            summary.append(f"member {m.id} is unreachable: [{', '.join(m.client_urls)}] are all unreachable")
        elif p.ssh_error:
            m.error = UNKNOWN
            summary.append(f"member {m.id} health is unknown: {UNKNOWN.removeprefix('unknown ')}")
        else:
            m.healthy, m.latency_ms, m.error = p.healthy, p.latency_ms, p.error
            m.version, m.db_size, m.raft_term, m.raft_index = p.version, p.db_size, p.raft_term, p.raft_index
            if p.healthy:
                summary.append(f"member {m.id} is healthy: got healthy result from {p.endpoint.url}")
            elif p.member_id is not None:
                summary.append(f"member {m.id} is unhealthy: got unhealthy result from {p.endpoint.url}")
            else:
                summary.append(f"member {m.id} is unreachable: [{', '.join(m.client_urls)}] are all unreachable")
        m.leader = leader_id is not None and m.id == format(leader_id, "x")
        members.append(m)
    ids = {m.id for m in members}
    strangers = [p for p in probes if p.member_id is not None and format(p.member_id, "x") not in ids]
    errors = [f"{p.endpoint.via} ({p.endpoint.url}) answers as member {p.member_id:x}, which is not in the "
              "cluster's member list (another cluster?)" for p in strangers]
    healthy_n = sum(m.healthy for m in members)
    unknown_n = sum(m.error == UNKNOWN for m in members)
    if healthy_n == len(members) and leader_id is not None:
        summary.append("cluster is healthy")
    elif unknown_n and healthy_n + unknown_n == len(members) and leader_id is not None:
        summary.append(f"cluster is healthy as far as can be seen ({unknown_n} member(s) unknown)")
    elif healthy_n:
        summary.append("cluster is degraded")
    else:
        summary.append("cluster is unavailable")
    if leader_id is None and (healthy_n or any(p.extra.get("election") for p in probes)):
        errors.append("no leader elected: a leader election is in progress (members answer but know no leader), "
                      "or too few members are up for a quorum")
    healthy = healthy_n == len(members) and leader_id is not None and not strangers
    return EtcdCluster(members=members, healthy=healthy, summary=summary + errors,
                       error="; ".join(errors) or None)


def _unavailable(probes, endpoints) -> EtcdCluster:
    """No endpoint answered: show each inventory endpoint as an unreachable member."""
    members, summary, errors = [], [], []
    by_ep = {p.endpoint: p for p in probes}
    for ep in endpoints:
        p = by_ep.get(ep)
        err = (p.error if p else None) or "no answer"
        members.append(EtcdMember(id="", name=ep.via, peer_urls=[], client_urls=[ep.url], error=err))
        summary.append(f"member ({ep.via}) is unreachable: [{ep.url}] are all unreachable")
        errors.append(f"{ep.via}: {err}")
    summary.append("cluster is unavailable")
    return EtcdCluster(members=members, healthy=False, summary=summary,
                       error="no etcd member answered (" + "; ".join(errors) + ")" if errors else "no endpoints")


def no_quorum_reason(cluster: EtcdCluster) -> str | None:
    """"etcd has no quorum (...)" when too few members answer for a quorum, else None.

    Used to explain what else stalls with the store (Docker's classic network calls wait on it)."""
    listed = [m for m in cluster.members if m.id]
    if not listed:
        return "etcd has no quorum: no member answers" if cluster.members or cluster.error else None
    healthy = sum(m.healthy for m in listed)
    quorum = len(listed) // 2 + 1
    if healthy < quorum:
        return f"etcd has no quorum ({healthy} of {len(listed)} members answer, {quorum} needed)"
    return None


def after_removal(name: str, members: list[EtcdMember]) -> tuple[int, int] | None:
    """(healthy, remaining) of the members left once ``name``'s is removed; None when ``name`` holds no member."""
    if not any(m.name == name for m in members):
        return None
    rest = [m for m in members if m.name != name]
    return sum(m.healthy for m in rest), len(rest)


def quorum_kept(healthy: int, remaining: int) -> bool:
    """Whether ``healthy`` of ``remaining`` members still make a quorum."""
    return remaining > 0 and healthy * 2 > remaining


def no_quorum_after_removal(name: str, healthy: int, remaining: int) -> str:
    return (f"removing {name}'s etcd member would leave {healthy} healthy of {remaining} members, no quorum: "
            "heal the cluster first (`overlay-tui runbook apply`)")


def removal_refusal(name: str, members: list[EtcdMember]) -> str | None:
    """Why removing ``name``'s etcd member would leave the cluster without quorum, or None (kept, or no member)."""
    left = after_removal(name, members)
    return None if left is None or quorum_kept(*left) else no_quorum_after_removal(name, *left)
