"""Load and validate a TOML inventory of nodes into typed objects.

Layout::

    [defaults]            # optional, shared by every node
    user = "root"
    key = "~/.ssh/id_ed25519"

    [cluster]             # optional, cluster-wide settings
    etcd_token = "etcd-cluster-01"
    etcd_members = 3      # or ["docker-node1", "docker-node2", "docker-node3"]; default: 1-3 nodes all,
                          # 4-6 nodes 3, 7 and more 5 (the others run no etcd and use the members' endpoints)

    [[node]]
    name = "docker-node1"
    address = "198.18.0.1"    # IP, host name, or a Host alias from ~/.ssh/config

Every problem raises :class:`InventoryError` naming the file, the node and the field.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from core.dockerd.validation import name_problem, subnet_problem
from core.errors import InventoryError
from core.model import ClusterSpec, Inventory, NodeSpec

_NODE_ONLY = {"name", "address", "advertise"}
_SHARED = {"user", "port", "key", "known_hosts", "connect_timeout", "command_timeout", "capture_interface"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}$")


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read, parse and validate ``path``; raise :class:`InventoryError` on any problem."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(str(p), "no such file; give an existing inventory with --inventory FILE") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(str(p), f"cannot read the file ({e.__class__.__name__}: {e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InventoryError(str(p), f"TOML syntax error: {e}") from None
    return parse_inventory(data, str(p))


def parse_inventory(data: dict[str, Any], path: str) -> Inventory:
    """Validate already-parsed TOML ``data`` (``path`` is only used in messages)."""
    base = Path(path).expanduser().resolve().parent
    _reject_unknown(data, {"defaults", "cluster", "node"}, path, None, what="top-level table")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InventoryError(path, "must be a table ([defaults])", field="defaults")
    _reject_unknown(defaults, _SHARED, path, "[defaults]", what="key")
    cluster = _parse_cluster(data.get("cluster", {}), path)
    raw_nodes = data.get("node")
    if raw_nodes is None:
        raise InventoryError(path, "no nodes: add at least one [[node]] table with name and address")
    if not isinstance(raw_nodes, list) or not all(isinstance(n, dict) for n in raw_nodes):
        raise InventoryError(path, "nodes must be written as [[node]] tables", field="node")
    if not raw_nodes:
        raise InventoryError(path, "no nodes: add at least one [[node]] table with name and address", field="node")
    nodes: list[NodeSpec] = []
    seen_names: dict[str, int] = {}
    seen_addrs: dict[tuple[str, int | None], str] = {}
    for i, raw in enumerate(raw_nodes, start=1):
        node = _parse_node(raw, defaults, i, path, base)
        if node.name in seen_names:
            raise InventoryError(path, f"duplicate node name (node #{seen_names[node.name]} has it too)",
                                 node=f"'{node.name}' (#{i})", field="name")
        seen_names[node.name] = i
        addr_key = (_canonical_address(node.address), node.port or 22)   # no port means ssh's default
        if addr_key in seen_addrs:
            raise InventoryError(path, f"duplicate address {node.address!r} (node '{seen_addrs[addr_key]}' has it too)",
                                 node=f"'{node.name}' (#{i})", field="address")
        seen_addrs[addr_key] = node.name
        nodes.append(node)
    # advertise addresses must be unique too: etcd and Docker identify members by them
    adv: dict[str, str] = {}
    for i, n in enumerate(nodes, start=1):
        if n.advertise:
            if n.advertise in adv:
                raise InventoryError(path, f"duplicate advertise address {n.advertise!r} (node '{adv[n.advertise]}' has it too)",
                                     node=f"'{n.name}' (#{i})", field="advertise")
            adv[n.advertise] = n.name
    members = cluster.etcd_members       # a count above the node count means every node (see core.etcd.sizing)
    if isinstance(members, tuple):
        unknown = [m for m in members if m not in seen_names]
        if unknown:
            raise InventoryError(path, f"names nodes that are not in the inventory: {', '.join(unknown)}",
                                 node="[cluster]", field="etcd_members")
    return Inventory(path=path, nodes=tuple(nodes), cluster=cluster)


def _etcd_members(val: Any, path: str) -> int | tuple[str, ...]:
    """A member count (1 or more) or a non-empty list of distinct node names."""
    if isinstance(val, int) and not isinstance(val, bool):
        if val < 1:
            raise InventoryError(path, f"must be at least 1, got {val}", node="[cluster]", field="etcd_members")
        return val
    if isinstance(val, list) and val and all(isinstance(v, str) and v for v in val):
        if len(set(val)) != len(val):
            raise InventoryError(path, "lists a node twice", node="[cluster]", field="etcd_members")
        return tuple(val)
    raise InventoryError(path, f"must be a count or a list of node names, got {val!r}", node="[cluster]",
                         field="etcd_members")


def _reject_unknown(table: dict[str, Any], allowed: set[str], path: str, node: str | None, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise InventoryError(path, f"unknown {what} {key!r}; allowed: {', '.join(sorted(allowed))}",
                                 node=node, field=key)


def _parse_cluster(raw: Any, path: str) -> ClusterSpec:
    if not isinstance(raw, dict):
        raise InventoryError(path, "must be a table ([cluster])", field="cluster")
    allowed = {f.name: f.default for f in fields(ClusterSpec)}
    _reject_unknown(raw, set(allowed), path, "[cluster]", what="key")
    values: dict[str, Any] = {}
    for key, val in raw.items():
        if key == "etcd_members":
            values[key] = _etcd_members(val, path)
            continue
        want = type(allowed[key])
        if want is bool:
            if not isinstance(val, bool):
                raise InventoryError(path, f"must be true or false, got {val!r}", node="[cluster]", field=key)
            values[key] = val
        elif want is int:
            values[key] = _port(val, path, "[cluster]", key) if key.endswith("port") else _int(val, path, "[cluster]", key)
        elif not isinstance(val, str) or not val:
            raise InventoryError(path, f"must be a non-empty string, got {val!r}", node="[cluster]", field=key)
        else:
            values[key] = _cluster_string(key, val, path)
    if values.get("etcd_client_port", 2379) == values.get("etcd_peer_port", 2380):
        raise InventoryError(path, "etcd's client and peer ports must differ", node="[cluster]", field="etcd_peer_port")
    return ClusterSpec(**values)


# What each string of [cluster] must look like: it ends up in commands run on the nodes.
_CLUSTER_STRINGS = {
    "etcd_token": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"), "letters, digits, '.', '_' or '-'"),
    "etcd_data_dir": (re.compile(r"^/[A-Za-z0-9._/-]*$"), "an absolute path of letters, digits, '.', '_', '-' and '/'"),
    "probe_image": (re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"), "an image name like repo/name:tag"),
}


def _cluster_string(key: str, val: str, path: str) -> str:
    if key in ("network", "network_subnet"):         # the rules `network create` applies (one place)
        problem = name_problem(val) if key == "network" else subnet_problem(val)
        if problem:
            raise InventoryError(path, problem.split(": ", 1)[1], node="[cluster]", field=key)
        return val
    pattern, what = _CLUSTER_STRINGS[key]
    if not pattern.match(val):
        raise InventoryError(path, f"must be {what}, got {val!r}", node="[cluster]", field=key)
    return val


def _parse_node(raw: dict[str, Any], defaults: dict[str, Any], i: int, path: str, base: Path) -> NodeSpec:
    label = f"'{raw['name']}' (#{i})" if isinstance(raw.get("name"), str) and raw["name"] else f"#{i}"
    _reject_unknown(raw, _NODE_ONLY | _SHARED, path, label, what="key")
    for required in ("name", "address"):
        if required not in raw:
            raise InventoryError(path, f"missing required field '{required}'", node=label, field=required)
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InventoryError(path, f"must be letters, digits, '.', '_' or '-' (at most 63), got {name!r}",
                             node=label, field="name")
    merged = {**defaults, **raw}
    address = _address(merged["address"], path, label, "address")
    user = merged.get("user")
    if user is not None and (not isinstance(user, str) or not _USER_RE.match(user)):
        raise InventoryError(path, f"must be a user name, got {user!r}", node=label, field="user")
    port = _port(merged["port"], path, label, "port") if "port" in merged else None
    key = _readable(merged.get("key"), path, label, "key", base)
    known_hosts = _readable(merged.get("known_hosts"), path, label, "known_hosts", base)
    advertise = merged.get("advertise")
    if advertise is not None:
        if isinstance(advertise, str) and (problem := _zone_problem(advertise)):
            raise InventoryError(path, problem, node=label, field="advertise")
        try:
            advertise = str(ipaddress.ip_address(advertise))
        except ValueError:
            raise InventoryError(path, f"must be an IP address, got {advertise!r}", node=label, field="advertise") from None
    elif _is_ip(address):
        advertise = str(ipaddress.ip_address(address))
    iface = merged.get("capture_interface")
    if iface is not None and (not isinstance(iface, str) or not re.match(r"^[A-Za-z0-9@._-]{1,15}$", iface)):
        raise InventoryError(path, f"must be an interface name, got {iface!r}", node=label, field="capture_interface")
    return NodeSpec(
        name=name, address=address, user=user, port=port, key=key, known_hosts=known_hosts,
        connect_timeout=_seconds(merged.get("connect_timeout", 5.0), path, label, "connect_timeout"),
        command_timeout=_seconds(merged.get("command_timeout", 30.0), path, label, "command_timeout"),
        advertise=advertise, capture_interface=iface,
    )


_ZONE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _zone_problem(s: str) -> str | None:
    """An IPv6 zone ID (``fe80::1%eth0``) reaches commands and plans: letters, digits, '_', '.', '-' only."""
    if "%" not in s:
        return None
    zone = s.split("%", 1)[1]
    if _ZONE_RE.match(zone):
        return None
    return f"IPv6 zone ID {zone!r} may hold only letters, digits, '_', '.' and '-' (e.g. fe80::1%eth0), got {s!r}"


def _is_ip(s: str) -> bool:
    if _zone_problem(s):
        return False
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def _canonical_address(s: str) -> str:
    return str(ipaddress.ip_address(s)) if _is_ip(s) else s.lower().rstrip(".")


def _address(val: Any, path: str, node: str, fld: str) -> str:
    if not isinstance(val, str) or not val.strip():
        raise InventoryError(path, f"must be an IP address or host name, got {val!r}", node=node, field=fld)
    s = val.strip()
    if problem := _zone_problem(s.strip("[]")):
        raise InventoryError(path, problem, node=node, field=fld)
    if _is_ip(s.strip("[]")):
        return s.strip("[]")
    if re.fullmatch(r"[0-9.]+", s) or not _HOST_RE.match(s):
        raise InventoryError(path, f"not a valid IP address, host name or ~/.ssh/config alias: {val!r}",
                             node=node, field=fld)
    return s


def _int(val: Any, path: str, node: str, fld: str) -> int:
    if isinstance(val, bool) or not isinstance(val, int):
        raise InventoryError(path, f"must be an integer, got {val!r}", node=node, field=fld)
    return val


def _port(val: Any, path: str, node: str, fld: str) -> int:
    if isinstance(val, bool) or not isinstance(val, int) or not 1 <= val <= 65535:
        raise InventoryError(path, f"must be an integer from 1 to 65535, got {val!r}", node=node, field=fld)
    return val


def _seconds(val: Any, path: str, node: str, fld: str) -> float:
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 < val <= 3600:
        raise InventoryError(path, f"must be a number of seconds above 0 (at most 3600), got {val!r}", node=node, field=fld)
    return float(val)


def _readable(val: Any, path: str, node: str, fld: str, base: Path) -> str | None:
    if val is None:
        return None
    if not isinstance(val, str) or not val:
        raise InventoryError(path, f"must be a file path, got {val!r}", node=node, field=fld)
    p = Path(val).expanduser()
    if not p.is_absolute():
        p = base / p
    if not p.exists():
        raise InventoryError(path, f"file {str(p)!r} does not exist", node=node, field=fld)
    if not p.is_file():
        raise InventoryError(path, f"{str(p)!r} is not a regular file", node=node, field=fld)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as e:
        raise InventoryError(path, f"file {str(p)!r} is not readable ({e.strerror})", node=node, field=fld) from None
    if fld == "key" and b"PRIVATE KEY-----" not in head and not head.startswith(b"PuTTY-User-Key-File"):
        hint = " (that is a public key: give the private one, without .pub)" if head.startswith(b"ssh-") else ""
        raise InventoryError(path, f"file {str(p)!r} is not an SSH private key{hint}", node=node, field=fld)
    return str(p)
