"""One Docker SDK client per node, riding on the node's docker socket forwarded over SSH.

No TCP port of dockerd is ever opened or used: the SDK talks to a local unix socket that
asyncssh forwards to ``/var/run/docker.sock`` on the node (see FACTS). The SDK is blocking, so
every call goes through :meth:`DockerNodes.call`, which runs it in a thread and turns SDK and
transport errors into :class:`core.errors.DockerError` naming the node.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from core.errors import DockerError, OverlayError

DOCKER_SOCKET = "/var/run/docker.sock"
T = TypeVar("T")


def docker_error(node: str, exc: BaseException) -> DockerError:
    """A DockerError with the daemon's own explanation when there is one."""
    if isinstance(exc, docker.errors.APIError):
        why = exc.explanation or str(exc)
        if isinstance(why, bytes):
            why = why.decode(errors="replace")
        return DockerError(f"{node}: Docker refused: {why}")
    unreachable = (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)
    if isinstance(exc, unreachable) or (isinstance(exc, docker.errors.DockerException)
                                        and isinstance(exc.__context__, unreachable)):
        return DockerError(f"{node}: cannot reach the Docker daemon at {DOCKER_SOCKET} through the SSH-forwarded "
                           "socket (is dockerd running on the node?)")
    if isinstance(exc, requests.exceptions.Timeout):
        return DockerError(f"{node}: the Docker daemon did not answer in time")
    return DockerError(f"{node}: Docker SDK error: {exc!r}")


class DockerNodes:
    """Lazily opened SDK clients, one per node, over the pool's SSH connections."""

    def __init__(self, pool, timeout: float = 30.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self._clients: dict[str, docker.DockerClient] = {}
        self._sockets: dict[str, str] = {}       # node -> local end of the forwarded docker socket
        self._locks: dict[str, asyncio.Lock] = {}

    async def client(self, node: str) -> docker.DockerClient:
        """The node's client, opening the SSH socket forward (and negotiating the API version) once."""
        lock = self._locks.setdefault(node, asyncio.Lock())
        async with lock:
            cl = self._clients.get(node)
            if cl is not None:
                return cl
            local = self._sockets.get(node)
            if local is None:
                local = self._sockets[node] = await self.pool.forward_unix(node, DOCKER_SOCKET)
            try:
                cl = await asyncio.to_thread(docker.DockerClient, base_url="unix://" + local,
                                             version="auto", timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - mapped to a typed error
                raise docker_error(node, e) from None
            self._clients[node] = cl
            return cl

    async def call(self, node: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(client, *args, **kwargs)`` in a thread with the node's client."""
        cl = await self.client(node)
        try:
            return await asyncio.to_thread(fn, cl, *args, **kwargs)
        except OverlayError:
            raise
        except Exception as e:  # noqa: BLE001 - mapped to a typed error
            if isinstance(e, (requests.exceptions.ConnectionError, ConnectionError)):
                self._clients.pop(node, None)    # the next call reconnects (and re-forwards if needed)
                self._sockets.pop(node, None)
            raise docker_error(node, e) from None

    async def reset(self, node: str) -> None:
        """Forget the node's client (after its daemon restarted: pooled connections are dead).

        The socket forward stays: each new connection opens a fresh SSH channel to the node's socket.
        """
        cl = self._clients.pop(node, None)
        if cl is not None:
            await asyncio.to_thread(cl.close)

    async def close(self) -> None:
        for node in list(self._clients):
            await self.reset(node)
