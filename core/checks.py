"""Checks of what a front door asks the service for, shared by the live and the recorded service.

One rule, one place: each function raises :class:`core.errors.UsageError` (exit 2) naming what is
wrong and what would be right, and returns the checked value. Network names and subnets have their
own module, :mod:`core.dockerd.validation`.
"""
from __future__ import annotations

from core.errors import UsageError
from core.model import Inventory, NodeSpec

#: the logs a node's detail can follow, and where each is on the node
LOG_SOURCES = {"etcd": "/var/log/etcd.log", "dockerd": "/var/log/dockerd.log"}
#: etcd key spaces: v3 (python-etcd3) and v2 (Docker's classic store)
KEY_SOURCES = ("v3", "v2")


def node(inventory: Inventory, name: str) -> NodeSpec:
    """The inventory's node ``name``."""
    for n in inventory.nodes:
        if n.name == name:
            return n
    raise UsageError(f"unknown node {name!r}; the inventory has {', '.join(n.name for n in inventory.nodes)}")


def nodes(inventory: Inventory, names: list[str] | None) -> list[NodeSpec]:
    """The inventory's nodes ``names`` in order, once each (every node when empty)."""
    if not names:
        return list(inventory.nodes)
    known = {n.name: n for n in inventory.nodes}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown node {', '.join(unknown)}" + (f" in {inventory.path}" if inventory.path else "")
                         + f"; known nodes: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def command(text: str) -> str:
    """A command to run on a node: not empty."""
    if not text.strip():
        raise UsageError("the command is empty")
    return text


def log_source(source: str) -> str:
    """The path on the node of log ``source``."""
    path = LOG_SOURCES.get(source)
    if path is None:
        raise UsageError(f"unknown log {source!r}; choose one of {', '.join(LOG_SOURCES)}")
    return path


def key_source(source: str) -> str:
    """An etcd key space: v3 or v2."""
    if source not in KEY_SOURCES:
        raise UsageError(f"unknown key source {source!r}; choose {' or '.join(KEY_SOURCES)}")
    return source
