"""Typed errors of the engine. Each carries one sentence an operator can act on.

Front doors show ``str(err)``: the CLI prints it and exits with ``err.exit_code``; the TUI
notifies and keeps running.
"""
from __future__ import annotations

from core.text import clean


class OverlayError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        message = clean(message)       # errors quote node output, etcd keys, file names: no terminal controls
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(OverlayError):
    """The command line or a form was filled in wrongly."""

    exit_code = 2


class InventoryError(OverlayError):
    """The inventory file is missing, unreadable or invalid."""

    exit_code = 2

    def __init__(self, path: str, problem: str, node: str | None = None, field: str | None = None) -> None:
        where = [str(path)]
        if node is not None:
            where.append(f"table {node}" if node.startswith("[") else f"node {node}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join(where) + ": " + problem)
        self.path, self.node, self.field, self.problem = str(path), node, field, problem


class NoInventoryError(OverlayError):
    """No inventory was given and no lab is up."""

    exit_code = 2


class SSHError(OverlayError):
    """Something went wrong talking to a node over SSH."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node


class NodeUnreachable(SSHError):
    """The node did not answer (refused, timed out, no route, name unknown)."""


class HostKeyError(SSHError):
    """The node's host key is unknown or has changed: never silently accepted."""


class AuthError(SSHError):
    """The node refused our key."""


class CommandTimeout(SSHError):
    """A remote command did not finish in time."""


class CommandFailed(SSHError):
    """A remote command exited non-zero where success was required."""

    def __init__(self, node: str, command: str, exit_status: int | None, stderr: str) -> None:
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(node, f"`{command}` exited {exit_status}: {tail}")
        self.command, self.exit_status, self.stderr = command, exit_status, stderr


class LabError(OverlayError):
    """The local lab could not be built, inspected or torn down."""


class EtcdError(OverlayError):
    """The etcd cluster could not be planned, started or read."""


class DockerError(OverlayError):
    """A node's Docker engine could not be reached or did not do what was asked."""


class CaptureError(OverlayError):
    """A capture could not be started, read or written."""


class ReadOnlyError(OverlayError):
    """A mutating action was asked for in a read-only console."""

    exit_code = 2


def raise_gathered(results: list, error: type[OverlayError]) -> None:
    """After ``asyncio.gather(..., return_exceptions=True)`` over nodes: re-raise an unexpected
    exception as it is, and join the typed errors of every failed node into one ``error``."""
    errors = [r for r in results if isinstance(r, BaseException)]
    for r in errors:
        if not isinstance(r, OverlayError):
            raise r
    if errors:
        raise error("; ".join(str(e) for e in errors))
