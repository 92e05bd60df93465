"""Checks the create-network form runs before anything is sent (pure functions, no UI)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from core.model import NetworkInfo

# Docker's rule for object names (daemon/names: restrictedNamePattern).
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PREDEFINED = {"bridge", "host", "none", "ingress", "docker_gwbridge"}


@dataclass(frozen=True)
class NetworkRequest:
    """A validated create-network request."""

    name: str
    subnet: str | None
    attachable: bool = True
    node: str | None = None


def check_name(name: str, existing: list[NetworkInfo]) -> str | None:
    """Why ``name`` cannot be a new network's name, or None."""
    if not name:
        return "name: required"
    if not NAME_RE.match(name):
        return (f"name: {name!r} is not a valid Docker name: start with a letter or digit, "
                "then only letters, digits, '_', '.' or '-'")
    if name in PREDEFINED:
        return f"name: {name!r} is a network Docker predefines"
    if any(n.name == name for n in existing):
        return f"name: a network named {name!r} already exists"
    return None


def check_subnet(subnet: str, existing: list[NetworkInfo]) -> str | None:
    """Why ``subnet`` (CIDR, may be empty) cannot be used, or None."""
    if not subnet:
        return None
    if "/" not in subnet:
        return f"subnet: {subnet!r} needs a prefix length, e.g. {subnet}/24"
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        msg = str(e)
        if "host bits set" in msg:
            fixed = ipaddress.ip_network(subnet, strict=False)
            return f"subnet: {subnet} has host bits set; did you mean {fixed}?"
        return f"subnet: {subnet!r} is not a CIDR network ({msg})"
    if net.version == 4 and net.prefixlen > 30:
        return f"subnet: {subnet} is too small for containers (use /30 or larger)"
    for other in existing:
        if other.subnet:
            try:
                if net.overlaps(ipaddress.ip_network(other.subnet, strict=False)):
                    return f"subnet: {subnet} overlaps {other.subnet} of network {other.name}"
            except ValueError:
                continue
    return None


def validate(name: str, subnet: str, existing: list[NetworkInfo], attachable: bool = True,
             node: str | None = None) -> tuple[NetworkRequest | None, list[str]]:
    """The request, or the list of problems (one sentence each, naming the field)."""
    name, subnet = name.strip(), subnet.strip()
    errors = [e for e in (check_name(name, existing), check_subnet(subnet, existing)) if e]
    if errors:
        return None, errors
    return NetworkRequest(name, subnet or None, attachable, node), []
