"""The links part of a service: a capture on the chosen nodes fed through one :class:`LinkMatcher`.

``links(nodes, seconds)`` yields a :class:`core.model.LinksSnapshot` every ``interval`` seconds (wall
clock, whatever the frame rate) and a final one when ``seconds`` have passed or the capture ended.
Matching runs in this process, batch by batch, as the frames come. With ``active`` set, pairs with no
traffic get a light probe stream (3 pings from the source node's probe container every few seconds,
see :mod:`core.dockerd.probes`) so they have something to measure.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import cast

from core.links.matcher import WINDOW, LinkMatcher
from core.model import FrameBatch, LinksSnapshot

LIVE_SETTLE = 0.5             # at the end of a live run, frames sent this recently are "in flight", not lost
ACTIVE_EVERY = 3.0            # seconds between probe rounds for idle pairs

CaptureFn = Callable[[list[str]], AsyncIterator[FrameBatch]]
NodesFn = Callable[[list[str] | None], list[str]]
PingFn = Callable[[list[tuple[str, str]]], Awaitable[list[str]]]


class LinksService:
    """``capture`` streams merged, named frames of some nodes; ``node_names`` resolves the node list
    (every node when empty; unknown: UsageError); ``ping`` (optional) sends probe pings for (src, dst)
    pairs and returns notices. ``settle`` is how recent an unanswered frame may be at the end and still
    count as in flight (0 for a complete recording)."""

    def __init__(self, capture: CaptureFn, node_names: NodesFn, ping: PingFn | None = None, *,
                 settle: float = LIVE_SETTLE) -> None:
        self.capture, self.node_names, self.ping, self.settle = capture, node_names, ping, settle

    async def links(self, nodes: list[str], seconds: float | None = None, *, interval: float = 1.0,
                    active: bool = False, window: float = WINDOW) -> AsyncIterator[LinksSnapshot]:
        names = self.node_names(nodes)
        matcher = LinkMatcher(names, window=window)
        notices: list[str] = []
        if active and self.ping is None:
            notices.append("active probing is not available here (no probe containers): passive only")
        ended, started = asyncio.Event(), asyncio.Event()
        last = [time.monotonic()]              # when frames last came (wall clock)

        async def consume() -> None:
            try:
                async with aclosing(cast(AsyncGenerator[FrameBatch, None], self.capture(names))) as batches:
                    async for batch in batches:
                        started.set()
                        notices.extend(batch.notices)
                        if batch.dropped:
                            notices.append(f"{batch.dropped} frames dropped by the capture (it could not keep up): "
                                           "they count as neither sent nor received")
                        if batch.frames:
                            matcher.add(batch.frames)
                            last[0] = time.monotonic()
            finally:
                ended.set()

        feeder = asyncio.create_task(consume())
        prober: asyncio.Task | None = None
        try:
            await _first(started, ended)           # the clock (and any probing) starts once every node captures
            if active and self.ping:
                prober = asyncio.create_task(self._probe(matcher, notices))
            deadline = None if seconds is None else time.monotonic() + seconds
            while True:
                wait = interval if deadline is None else min(interval, deadline - time.monotonic())
                if wait > 0:
                    try:
                        await asyncio.wait_for(ended.wait(), wait)
                    except TimeoutError:
                        pass
                if ended.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    break
                matcher.idle(time.monotonic() - last[0] - 0.5)   # a quiet link still gets its losses judged
                yield matcher.snapshot(notices=_take(notices))
            if feeder.done() and not feeder.cancelled() and feeder.exception() is not None:
                raise feeder.exception()  # type: ignore[misc]
            matcher.finish(0.0 if ended.is_set() else self.settle)
            yield matcher.snapshot(final=True, notices=_take(notices))
        finally:
            for t in (prober, feeder):
                if t is not None and not t.done():
                    t.cancel()
                    try:
                        await t
                    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already reported or moot
                        pass

    async def _probe(self, matcher: LinkMatcher, notices: list[str]) -> None:
        """Every ACTIVE_EVERY seconds: probe pings for ordered pairs that have seen no frame yet."""
        assert self.ping is not None
        while True:
            busy = {(st.src, st.dst) for st in matcher.stats.values() if st.sent}
            idle = [(a, b) for a in matcher.nodes for b in matcher.nodes if a != b and (a, b) not in busy]
            if idle:
                notices.extend(await self.ping(idle))
            await asyncio.sleep(ACTIVE_EVERY)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _take(notices: list[str]) -> list[str]:
    out = list(notices)
    notices.clear()
    return out
