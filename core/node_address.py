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


async def underlay_address(pool, node: NodeSpec | str) -> str:
    """The node's underlay IP (see the module docstring); resolved over SSH only when needed."""
    spec = pool.spec(node)
    known = literal_ip(spec.advertise) or literal_ip(spec.address)
    if known:
        return known
    cache: dict[str, str] = pool.__dict__.setdefault("_underlay_cache", {})
    if spec.name in cache:
        return cache[spec.name]
    res = await pool.run(spec, 'echo "$SSH_CONNECTION"', check=True)
    fields = res.stdout.split()
    ip = literal_ip(fields[2]) if len(fields) >= 3 else None
    if ip is None:
        raise SSHError(spec.name, "cannot tell the node's underlay IP ($SSH_CONNECTION is empty); "
                       "set `advertise = \"<ip>\"` for this node in the inventory")
    cache[spec.name] = ip
    return ip


async def underlay_addresses(pool, nodes) -> dict[str, str]:
    """Node name -> underlay IP for every node, resolved concurrently."""
    specs = [pool.spec(n) for n in nodes]
    ips = await asyncio.gather(*(underlay_address(pool, s) for s in specs))
    return {s.name: ip for s, ip in zip(specs, ips)}
