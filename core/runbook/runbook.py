"""The tutorial as a runbook: eight steps (:mod:`core.runbook.steps`), each with plan, apply and verify.

A step is verified first; only a step that does not verify is applied (and then verified again),
so a second apply changes nothing. Progress comes out as :class:`RunbookEvent` objects.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Protocol

from core.access import WriteGuard
from core.errors import OverlayError
from core.model import Inventory, RunbookEvent, StepState
from core.runbook.steps import STEPS, Check, RunbookTarget, Step


class ApplyLocking(Protocol):
    """Held while an apply runs (see :class:`core.runbook.lock.ApplyLock`); refuses a second apply."""

    def held(self) -> AbstractAsyncContextManager[None]: ...


class Runbook:
    """Plans, verifies and applies :data:`STEPS` against one :class:`RunbookTarget`."""

    def __init__(self, target: RunbookTarget, guard: WriteGuard, *, steps: tuple[Step, ...] = STEPS,
                 settle_interval: float = 1.0, lock: ApplyLocking | None = None) -> None:
        self.target, self.guard, self.steps, self.lock = target, guard, steps, lock
        self.settle_interval = settle_interval     # seconds between verifications while a step settles
        self.force_etcd = False                    # replace foreign etcd members (the operator confirmed)

    @property
    def inventory(self) -> Inventory:
        return self.target.inventory

    async def plan(self) -> list[StepState]:
        """Every step with the exact commands it would run on each node."""
        net = self.inventory.cluster.network
        return [StepState(id=s.id, title=s.title_for(net), commands=await s.plan(self)) for s in self.steps]

    async def apply(self, states: list[StepState] | None = None, *, force_etcd: bool = False) -> AsyncIterator[RunbookEvent]:
        """Verify each step; apply the ones that do not verify; stop at the first step that fails.

        ``states`` is a plan from :meth:`plan` to fill in (a fresh one when None). The whole apply holds
        the lock (when one was given): a second apply at the same time is refused, nothing changed.
        """
        self.guard.require("applying the runbook")
        async with self.lock.held() if self.lock is not None else nullcontext():
            async for ev in self._apply(states, force_etcd):
                yield ev

    async def _apply(self, states: list[StepState] | None, force_etcd: bool) -> AsyncIterator[RunbookEvent]:
        self.force_etcd = force_etcd
        states = states if states is not None else await self.plan()
        applied: set[int] = set()
        for step, state in zip(self.steps, states):
            state.running = True
            yield RunbookEvent(state, message="verifying")
            ok, detail = await self.check(step)
            if ok is False and step.apply is not None:
                if id(step.apply) in applied:
                    ok, detail = await self.check(step)
                else:
                    yield RunbookEvent(state, message=f"applying: {detail}")
                    try:
                        per_node = await step.apply(self)
                        applied.add(id(step.apply))
                    except OverlayError as e:
                        state.running, state.ok, state.detail = False, False, str(e)
                        yield RunbookEvent(state, message="failed")
                        return
                    for node, message in per_node:
                        yield RunbookEvent(state, node=node, message=message)
                    ok, detail = await self.settle(step)
            elif ok and step.apply is not None and id(step.apply) not in applied:
                detail = f"{detail} (already done)"
            state.running, state.ok, state.detail = False, ok, detail
            yield RunbookEvent(state, message={True: "ok", False: "failed", None: "not available"}[ok])
            if ok is False:
                return

    async def verify(self) -> list[StepState]:
        """Verify every step without changing anything."""
        states = await self.plan()
        for step, state in zip(self.steps, states):
            state.ok, state.detail = await self.check(step)
        return states

    async def settle(self, step: Step) -> Check:
        """Verify after an apply; a step that converges is given up to ``step.settle`` seconds."""
        t0 = time.monotonic()
        ok, detail = await self.check(step)
        while ok is False and time.monotonic() - t0 < step.settle:
            await asyncio.sleep(self.settle_interval)
            ok, detail = await self.check(step)
        waited = time.monotonic() - t0
        if ok and waited >= self.settle_interval:
            detail = f"{detail} (converged after {waited:.1f} s)"
        return ok, detail

    async def check(self, step: Step) -> Check:
        try:
            return await step.verify(self)
        except OverlayError as e:
            return False, str(e)
