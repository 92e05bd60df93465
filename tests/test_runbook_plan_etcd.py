"""The etcd step's plan against a running cluster: joiners named with their real command, stray members warned."""
from __future__ import annotations

from core.access import WriteGuard
from core.etcd.plan import plan_cluster
from core.model import ClusterSpec, EtcdCluster, EtcdMember, Inventory, NodeSpec
from core.runbook.runbook import Runbook
from core.runbook.steps import plan_etcd

IPS = {f"docker-node{i}": f"198.18.0.{10 + i}" for i in range(1, 6)}


def _inventory(n: int, members: int) -> Inventory:
    nodes = tuple(NodeSpec(f"docker-node{i}", IPS[f"docker-node{i}"]) for i in range(1, n + 1))
    return Inventory(path="x", nodes=nodes, cluster=ClusterSpec(etcd_members=members, etcd_tls=False))


def _member(name: str) -> EtcdMember:
    return EtcdMember(id=f"{abs(hash(name)) % 10**8:x}", name=name, peer_urls=[f"http://{IPS[name]}:2380"],
                      client_urls=[f"http://{IPS[name]}:2379"], healthy=True)


class Target:
    """What plan_etcd reads: the inventory, the members' plans, the running cluster."""

    def __init__(self, inventory: Inventory, running: list[str]) -> None:
        self.inventory, self.running = inventory, running

    async def etcd_plan(self):
        return plan_cluster(self.inventory, IPS)

    async def etcd_cluster(self) -> EtcdCluster:
        return EtcdCluster([_member(n) for n in self.running], healthy=True, summary=[])


async def _plan(n: int, members: int, running: list[str]) -> list[str]:
    return await plan_etcd(Runbook(Target(_inventory(n, members), running), WriteGuard()))  # type: ignore[arg-type]


async def test_a_node_not_in_the_running_cluster_is_planned_to_join_it_with_state_existing():
    lines = await _plan(5, 5, ["docker-node1", "docker-node2", "docker-node3"])
    for joiner in ("docker-node4", "docker-node5"):
        assert f"{joiner}: joins the running cluster: added by etcd's member-add API" in " ".join(lines)
        cmd = next(line for line in lines if line.startswith(f"{joiner}: ") and " --name " in line)
        assert "--initial-cluster-state existing" in cmd
        assert "docker-node1=http://198.18.0.11:2380" in cmd and f"{joiner}=" in cmd
    for member in ("docker-node1", "docker-node2", "docker-node3"):
        cmd = next(line for line in lines if line.startswith(f"{member}: ") and " --name " in line)
        assert "--initial-cluster-state new" in cmd and not any(line.startswith(f"{member}: joins") for line in lines)
    assert not any(line.startswith("warning:") for line in lines)


async def test_a_fresh_cluster_has_no_joiners():
    lines = await _plan(3, 3, [])
    assert not any("joins the running cluster" in line for line in lines)
    assert sum("--initial-cluster-state new" in line for line in lines) == 3


async def test_a_member_on_a_node_no_longer_planned_is_warned_with_the_way_out():
    lines = await _plan(3, 3, ["docker-node1", "docker-node2", "docker-node3", "docker-node4"])
    warning = next(line for line in lines if line.startswith("warning: docker-node4"))
    assert "not planned to hold one" in warning and "overlay-tui node remove docker-node4" in warning
