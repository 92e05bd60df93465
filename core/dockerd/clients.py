"""One Docker SDK client per node, riding on the node's docker socket forwarded over SSH.

No TCP port of dockerd is ever opened or used: the SDK talks to a local unix socket that
asyncssh forwards to ``/var/run/docker.sock`` on the node. The SDK is blocking, so
every call goes through :meth:`DockerNodes.call`, which runs it in a thread and turns SDK and
transport errors into :class:`core.errors.DockerError` naming the node. The threads are this
part's own (a bounded pool, shut down by :meth:`DockerNodes.close`): a daemon that stalls past a
caller's timeout ties up Docker threads only, never the threads etcd or the rest of core use.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from core.errors import DockerError, OverlayError

DOCKER_SOCKET = "/var/run/docker.sock"
#: threads for SDK calls: a few per node run at once (a listing inspects each overlay network)
THREADS = 8
#: SDK calls one node may have in threads at once (more wait their turn): a daemon that stalls (a link down
#: under its socket forward) ties up this many threads at most, never the other nodes' (the pool has at least
#: this many threads per node)
PER_NODE = 3
#: what an SDK call raises when the daemon refuses or cannot be reached; anything else is a bug
SDK_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
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
    if isinstance(exc, docker.errors.DockerException):     # e.g. a container that exited non-zero
        return DockerError(f"{node}: Docker: {exc}")
    return DockerError(f"{node}: talking to the Docker daemon failed: {exc}")


class DockerNodes:
    """Lazily opened SDK clients, one per node, over the pool's SSH connections."""

    def __init__(self, pool, timeout: float = 30.0, threads: int | None = None) -> None:
        self.pool = pool
        self.timeout = timeout
        threads = threads or max(THREADS, PER_NODE * len(getattr(pool, "nodes", None) or ()))
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="overlay-tui-docker")
        self._slots: dict[str, asyncio.Semaphore] = {}    # node -> its share of the threads (PER_NODE)
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
            if local is None:       # forward_unix closes the listener of the forward it replaces
                local = self._sockets[node] = await self.pool.forward_unix(node, DOCKER_SOCKET)
            try:
                cl = await self._thread(docker.DockerClient, base_url="unix://" + local,
                                        version="auto", timeout=self.timeout)
            except SDK_ERRORS as e:
                raise docker_error(node, e) from None
            self._clients[node] = cl
            return cl

    async def call(self, node: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(client, *args, **kwargs)`` in a thread with the node's client."""
        cl = await self.client(node)
        try:
            return await self._node_thread(node, fn, cl, *args, **kwargs)
        except OverlayError:
            raise
        except SDK_ERRORS as e:
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
            await self._thread(cl.close)

    async def _node_thread(self, node: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a thread, within the node's share: the share is given back when the thread ends, not when
        a caller stops waiting for it (a call stuck on a silent daemon keeps its thread until its own timeout)."""
        slots = self._slots.setdefault(node, asyncio.Semaphore(PER_NODE))
        await slots.acquire()
        loop = asyncio.get_running_loop()

        def given_back(_: object) -> None:
            try:
                loop.call_soon_threadsafe(slots.release)
            except RuntimeError:         # the loop has closed (the console exited): nobody waits for the share
                pass
        try:
            done = self.executor.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            slots.release()
            raise
        done.add_done_callback(given_back)
        return await asyncio.wrap_future(done)

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        """Close every client, then let the threads go (a call still stuck in one is not waited for)."""
        for node in list(self._clients):
            await self.reset(node)
        self.executor.shutdown(wait=False, cancel_futures=True)
