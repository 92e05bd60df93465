"""The rules for a new overlay network's name and subnet: one place for the CLI, the console's form
and both services.

:func:`problems` lists what is wrong (one sentence each, starting with the field it is about);
:func:`validate` is what the console's form runs before it sends anything; :func:`require_valid`
raises :class:`core.errors.UsageError` (exit 2) for the CLI and the services.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import UsageError
from core.model import NetworkInfo

#: Docker's rule for object names (daemon/names: restrictedNamePattern)
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PREDEFINED = frozenset({"bridge", "host", "none", "ingress", "docker_gwbridge"})
#: prefix lengths of an overlay subnet: room for containers, and not half the address space
MIN_PREFIX, MAX_PREFIX = 8, 30


@dataclass(frozen=True)
class NetworkRequest:
    """A validated create-network request."""

    name: str
    subnet: str | None
    attachable: bool = True
    node: str | None = None


def name_problem(name: str, existing: Sequence[NetworkInfo] = ()) -> str | None:
    """Why ``name`` cannot be a new network's name, or None."""
    if not name:
        return "name: required"
    if not NAME_RE.match(name):
        return (f"name: {name!r} is not a valid Docker name: start with a letter or digit, "
                "then only letters, digits, '_', '.' or '-'")
    if name in PREDEFINED:
        return f"name: {name!r} is a network Docker predefines ({', '.join(sorted(PREDEFINED))})"
    for other in existing:
        if other.name == name:
            return (f"name: a network named {name!r} already exists ({other.driver}, id {other.id[:12]}, on "
                    f"{', '.join(other.nodes) or 'no node'}); pick another name or delete it first")
    return None


def subnet_problem(subnet: str, existing: Sequence[NetworkInfo] = ()) -> str | None:
    """Why ``subnet`` (an IPv4 CIDR; empty: Docker chooses) cannot be used, or None."""
    if not subnet:
        return None
    if "/" not in subnet:
        return f"subnet: {subnet!r} needs a prefix length, e.g. {subnet}/24"
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError as e:
        return f"subnet: {subnet!r} is not a CIDR network ({e}); give an IPv4 CIDR such as 198.19.10.0/24"
    if net.version != 4:
        return f"subnet: {subnet} is IPv6; overlay-tui creates IPv4 overlay networks only"
    if str(net) != subnet:
        return f"subnet: {subnet} has host bits set; did you mean {net}?"
    if net.prefixlen > MAX_PREFIX:
        return f"subnet: {subnet} is too small for containers (the prefix must be /{MIN_PREFIX} to /{MAX_PREFIX})"
    if net.prefixlen < MIN_PREFIX:
        return f"subnet: {subnet} is too large (the prefix must be /{MIN_PREFIX} to /{MAX_PREFIX})"
    for other in existing:
        if not other.subnet:
            continue
        try:
            theirs = ipaddress.ip_network(other.subnet, strict=False)
        except ValueError:
            continue
        if theirs.version == 4 and net.overlaps(theirs):
            return (f"subnet: {subnet} overlaps {other.subnet} of network {other.name} "
                    f"({', '.join(other.nodes) or 'no node'}); choose one that overlaps no other network")
    return None


def problems(name: str, subnet: str | None, existing: Sequence[NetworkInfo] = ()) -> list[str]:
    """Everything wrong with a new network ``name`` on ``subnet``, one sentence each; [] when fine."""
    return [p for p in (name_problem(name, existing), subnet_problem(subnet or "", existing)) if p]


def validate(name: str, subnet: str, existing: Sequence[NetworkInfo], attachable: bool = True,
             node: str | None = None) -> tuple[NetworkRequest | None, list[str]]:
    """The form's check: the request, or the list of problems."""
    name, subnet = name.strip(), subnet.strip()
    found = problems(name, subnet, existing)
    if found:
        return None, found
    return NetworkRequest(name, subnet or None, attachable, node), []


def require_valid(name: str, subnet: str | None, existing: Sequence[NetworkInfo] = ()) -> str | None:
    """``subnet`` (None when Docker chooses) if ``name`` and ``subnet`` pass; else a UsageError."""
    found = problems(name, (subnet or "").strip(), existing)
    if found:
        raise UsageError("; ".join(found))
    return (subnet or "").strip() or None
