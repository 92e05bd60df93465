"""Node statuses as each node answers: every node bounded by its own timeout, none waiting for another.

Shared by the live and the recorded service. A node that does not answer within its timeout is yielded
as down with a sentence saying so; a node whose asking fails with a typed error is yielded as down with
that error. The console (5 s refresh) thereby marks a node that stopped answering down within two
refreshes, while the other rows keep arriving.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from core.errors import OverlayError
from core.model import NodeSpec, NodeStatus

#: seconds a node's status may take (SSH facts and Docker's info, asked at once), below the console's 5 s
#: refresh period: a node that stops answering right after a refresh shows down before the second one ends
ANSWER_TIMEOUT = 4.0
#: extra seconds the safety bound around a whole answer allows beyond its parts' own timeouts
GRACE = 1.0
#: what a node that says nothing may be going through (said with every "no answer")
WHY_SILENT = "the host, its sshd or the link to it is down, or it is overloaded"


def no_answer(spec: NodeSpec, seconds: float) -> NodeStatus:
    """The status of a node that said nothing within ``seconds``."""
    return NodeStatus(name=spec.name, address=spec.address, reachable=False,
                      error=f"{spec.name}: no answer within {seconds:g} s ({WHY_SILENT})")


async def as_they_answer(specs: list[NodeSpec], ask: Callable[[NodeSpec], Awaitable[NodeStatus]],
                         timeout: float) -> AsyncIterator[NodeStatus]:
    """``ask(spec)`` for every node at once; yield each status as it arrives (at most ``timeout`` s each)."""

    async def one(spec: NodeSpec) -> NodeStatus:
        try:
            return await asyncio.wait_for(ask(spec), timeout)
        except TimeoutError:
            return no_answer(spec, timeout)
        except OverlayError as e:
            return NodeStatus(name=spec.name, address=spec.address, reachable=False, error=str(e))

    tasks = [asyncio.ensure_future(one(s)) for s in specs]
    try:
        for fut in asyncio.as_completed(tasks):
            yield await fut
    finally:                       # the consumer stopped early (or was cancelled): ask no further
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
