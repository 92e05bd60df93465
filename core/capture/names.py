"""Names for what a capture sees: VNI -> network, inner IP/MAC -> container@node, outer IP -> node.

:func:`build_names` turns the cluster's networks (:class:`core.model.NetworkInfo`, whose ``vni``
the Docker side fills from etcd's v2 store in classic mode or from inspect's options in swarm mode)
and the inventory's advertise addresses into a :class:`core.model.Names`. :func:`apply_names`
labels frames with plain dict lookups, cheap enough for the live path. Anything unknown keeps
``None`` and the formatter shows the raw value instead.
"""
from __future__ import annotations

from collections.abc import Iterable

from core.model import Frame, Inventory, Names, NetworkInfo
from core.text import clean_line, scrub


def build_names(inventory: Inventory, networks: Iterable[NetworkInfo],
                node_addresses: dict[str, str] | None = None) -> Names:
    """Names from the inventory (outer addresses) and the networks (VNIs and containers).

    ``node_addresses`` adds outer addresses learned elsewhere (address -> node name), e.g. the
    interface addresses found on the nodes when their inventory entry is a host name.
    """
    names = Names()
    for node in inventory.nodes:
        for addr in (node.address, node.advertise):
            if addr:
                names.nodes[addr] = node.name
    if node_addresses:
        names.nodes.update(node_addresses)
    for net in networks:
        if net.vni is not None:
            names.networks[int(net.vni)] = clean_line(net.name)
        for c in net.containers:
            label = clean_line(f"{c.name}@{c.node}" if c.node else c.name)   # Docker's names: hostile
            if c.ip:
                names.containers[c.ip.split("/")[0]] = label
            if c.mac:
                names.containers[c.mac.lower()] = label
    return names


def apply_names(frames: Iterable[Frame], names: Names) -> None:
    """Fill ``network``, ``src_name``, ``dst_name``, ``outer_src_name``, ``outer_dst_name`` in place
    (a name ``names`` does not know leaves what the frame already has)."""
    nets, conts, nodes = names.networks, names.containers, names.nodes
    for f in frames:
        f.network = (nets.get(f.vni) if f.vni is not None else None) or f.network
        f.src_name = conts.get(f.inner_src) or conts.get(f.inner_src_mac) or f.src_name
        f.dst_name = conts.get(f.inner_dst) or conts.get(f.inner_dst_mac) or f.dst_name
        f.outer_src_name = nodes.get(f.outer_src) or f.outer_src_name
        f.outer_dst_name = nodes.get(f.outer_dst) or f.outer_dst_name


def learn_names(names: Names, frames: Iterable[Frame]) -> None:
    """Add to ``names`` what already-named ``frames`` carry (for a consumer of a live stream)."""
    for f in frames:
        if f.network is not None and f.vni is not None:
            names.networks[f.vni] = f.network
        if f.src_name and f.inner_src:
            names.containers[f.inner_src] = f.src_name
        if f.dst_name and f.inner_dst:
            names.containers[f.inner_dst] = f.dst_name


def merge_names(*parts: Names) -> Names:
    """One :class:`Names` with every mapping of ``parts`` (later ones win)."""
    out = Names()
    for p in parts:
        out.networks.update(p.networks)
        out.containers.update(p.containers)
        out.nodes.update(p.nodes)
    return out


def names_to_json(names: Names) -> dict:
    """A JSON-able form (VNIs as string keys), for sidecars and recorded state."""
    return {"networks": {str(k): v for k, v in names.networks.items()},
            "containers": dict(names.containers), "nodes": dict(names.nodes)}


def names_from_json(data: dict) -> Names:
    """Inverse of :func:`names_to_json` (a sidecar next to a pcap is hostile too: its strings are cleaned)."""
    return scrub(Names(networks={int(k): v for k, v in data.get("networks", {}).items()},
                 containers=dict(data.get("containers", {})), nodes=dict(data.get("nodes", {}))))
