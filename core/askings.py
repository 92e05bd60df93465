"""Askings of nodes that a silent node costs its caller once, not on every call.

A node is silent when its last asking failed after at least the caller's patience (a hang, a timeout);
one that failed at once (its daemon down: refused) is not. A caller waits on a silent node only its
patience; the asking goes on in the background (bounded by whatever it awaits) and the next call shares it
instead of starting another that would hang as it does. Used by the networks listing (Docker's answer per
node) and the etcd reader (a node's SSH connection).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from core.errors import OverlayError

T = TypeVar("T")


class NodeAskings(Generic[T]):
    """At most one asking per node in :attr:`flight`; :attr:`silent` the nodes whose last asking failed slowly."""

    def __init__(self, *, share: bool) -> None:
        """``share``: an asking still in flight is shared with every caller (for what cannot go stale, such as a
        connection); without, only a silent node's is (an answer may predate a change made since)."""
        self.share = share
        self.flight: dict[str, asyncio.Future[T]] = {}
        self.silent: set[str] = set()

    def ask(self, node: str, start: Callable[[], Awaitable[T]], patience: float) -> asyncio.Future[T]:
        """The node's asking still in flight, when it may be shared, else a new one; an asking that ended is never
        handed out again. A failure after ``patience`` s or more makes the node silent; an answer, or a quicker
        failure, makes it not."""
        asking = self.flight.get(node)
        if asking is None or asking.done() or not (self.share or node in self.silent):
            asking = self.flight[node] = asyncio.ensure_future(self._timed(node, start(), patience))
            asking.add_done_callback(lambda f: self._ended(node, f))
        return asking

    async def _timed(self, node: str, answer: Awaitable[T], patience: float) -> T:
        t0 = time.monotonic()
        try:
            result = await answer
        except OverlayError:
            if time.monotonic() - t0 >= patience:
                self.silent.add(node)
            else:
                self.silent.discard(node)
            raise
        self.silent.discard(node)
        return result

    def _ended(self, node: str, asking: asyncio.Future[T]) -> None:
        if self.flight.get(node) is asking:
            del self.flight[node]
        if not asking.cancelled():
            asking.exception()              # read, even if no caller waits for it any more

    async def close(self) -> None:
        """Stop the askings still in flight (one replaced by a newer asking ends by itself)."""
        for asking in list(self.flight.values()):
            asking.cancel()
        await asyncio.gather(*self.flight.values(), return_exceptions=True)
        self.flight.clear()
