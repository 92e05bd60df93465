"""Which nodes hold an etcd member: etcd wants 3 or 5 members, not one per host.

An even count adds no failure tolerance over the odd count below it, and every member slows writes
(each is a replica every write waits on a majority of). Default: every node up to 3, then 3 members
(4-6 nodes), then 5 (7 nodes and more); ``[cluster] etcd_members`` in the inventory sets a count (the
first N nodes) or names the nodes. The other nodes run no etcd: their dockerd points at the members'
client endpoints (see :mod:`core.dockerd.store`).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.model import Inventory, NodeSpec


def default_size(nodes: int) -> int:
    return nodes if nodes <= 3 else (3 if nodes < 7 else 5)


@dataclass(frozen=True)
class Sizing:
    """The member nodes (inventory order), the others, and why."""

    members: tuple[NodeSpec, ...]
    clients: tuple[NodeSpec, ...]
    why: str

    @property
    def member_names(self) -> list[str]:
        return [n.name for n in self.members]

    def is_member(self, node: str) -> bool:
        return node in self.member_names


def sizing(inventory: Inventory) -> Sizing:
    nodes, want = inventory.nodes, inventory.cluster.etcd_members
    if isinstance(want, tuple):
        members = tuple(n for n in nodes if n.name in want)
        why = "named in the inventory's [cluster] etcd_members"
    elif isinstance(want, int):
        members = nodes[:want]
        why = (f"[cluster] etcd_members = {want}: the first {len(members)} node(s) of the inventory"
               + (f" (only {len(nodes)} nodes)" if want > len(nodes) else ""))
    else:
        k = default_size(len(nodes))
        members = nodes[:k]
        why = (f"default sizing: {len(nodes)} node(s) -> {k} member(s) (every node up to 3, then 3, "
               "5 from 7 nodes: etcd wants an odd count, and every member slows writes)")
    if len(members) % 2 == 0:
        why += f"; note: {len(members)} members tolerate no more failures than {len(members) - 1}"
    clients = tuple(n for n in nodes if n not in members)
    return Sizing(members, clients, why)
