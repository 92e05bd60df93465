"""The underlay address of a node: what etcd and Docker advertise to the other nodes.

Order: the inventory's ``advertise``; else ``address`` when it is an IP literal; else the address
the node's sshd accepted our connection on (``$SSH_CONNECTION``'s third field), i.e. the node's own
IP on the route from this machine. Shared by the etcd and Docker parts so both advertise the same IP.
"""
from __future__ import annotations

import asyncio
import ipaddress

from core.errors import SSHError
from core.model import NodeSpec


def literal_ip(value: str | None) -> str | None:
    """``value`` if it is an IPv4/IPv6 literal, else None."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class UnderlayAddresses:
    """Each node's underlay IP (see the module docstring), resolved over SSH at most once per node."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self._resolved: dict[str, str] = {}

    async def of(self, node: NodeSpec | str) -> str:
        spec = self.pool.spec(node)
        known = literal_ip(spec.advertise) or literal_ip(spec.address)
        if known:
            return known
        if spec.name in self._resolved:
            return self._resolved[spec.name]
        res = await self.pool.run(spec, 'echo "$SSH_CONNECTION"', check=True)
        fields = res.stdout.split()
        ip = literal_ip(fields[2]) if len(fields) >= 3 else None
        if ip is None:
            raise SSHError(spec.name, "cannot tell the node's underlay IP ($SSH_CONNECTION is empty); "
                           "set `advertise = \"<ip>\"` for this node in the inventory")
        self._resolved[spec.name] = ip
        return ip

    async def all(self, nodes) -> dict[str, str]:
        """Node name -> underlay IP for every node, resolved concurrently."""
        specs = [self.pool.spec(n) for n in nodes]
        ips = await asyncio.gather(*(self.of(s) for s in specs))
        return {s.name: ip for s, ip in zip(specs, ips)}
