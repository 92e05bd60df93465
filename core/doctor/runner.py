"""Run the doctor's checks concurrently, each within its own time limit.

:class:`Doctor` gets the parts the live service already composed (SSH pool, Docker clients, etcd
reader, underlay addresses) in its constructor. :meth:`Doctor.run` starts every selected check at once;
a check that does not finish within :data:`CHECK_TIMEOUT` becomes a "warn" row saying so, and the
others are unaffected (each per-node step has its own shorter limit too, so one unreachable node only
marks that node).
"""
from __future__ import annotations

import asyncio
import time

from core.doctor.checks import CHECKS, DoctorContext
from core.errors import OverlayError, UsageError
from core.model import DoctorCheck, DoctorReport, Inventory

CHECK_TIMEOUT = 30.0


def known_ids() -> list[str]:
    return [i for ids, _ in CHECKS for i in ids]


class Doctor:
    """Every check of :mod:`core.doctor.checks` over one inventory."""

    def __init__(self, inventory: Inventory, pool, docker, reader, addresses, *,
                 check_timeout: float = CHECK_TIMEOUT) -> None:
        self.inventory, self.pool, self.docker, self.reader, self.addresses = inventory, pool, docker, reader, addresses
        self.check_timeout = check_timeout

    def select_nodes(self, nodes: list[str] | None) -> list[str]:
        names = [n.name for n in self.inventory.nodes]
        for n in nodes or []:
            if n not in names:
                raise UsageError(f"unknown node {n!r}; the inventory has {', '.join(names)}")
        return [n for n in names if not nodes or n in nodes]

    async def run(self, nodes: list[str] | None = None, checks: list[str] | None = None) -> DoctorReport:
        """Run the checks (all, or those whose ids are in ``checks``) on ``nodes`` (all when None)."""
        selected = self.select_nodes(nodes)
        if checks:
            unknown = sorted(set(checks) - set(known_ids()))
            if unknown:
                raise UsageError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(known_ids())}")
        chosen = [(ids, fn) for ids, fn in CHECKS if not checks or set(ids) & set(checks)]
        ctx = DoctorContext(self.inventory, self.pool, self.docker, self.reader, self.addresses, selected)
        t0 = time.monotonic()
        try:
            results = await asyncio.gather(*(self._one(ctx, ids, fn) for ids, fn in chosen))
        finally:
            await ctx.close()
        rows = [r for rs in results for r in rs if not checks or r.id in checks]
        return DoctorReport(rows, round(time.monotonic() - t0, 2))

    async def _one(self, ctx: DoctorContext, ids: tuple[str, ...], fn) -> list[DoctorCheck]:
        try:
            return await asyncio.wait_for(fn(ctx), self.check_timeout)
        except TimeoutError:
            return [DoctorCheck(i, "warn", [], f"did not finish within {self.check_timeout:g} s", [],
                                "run it again; `overlay-tui status` shows which node is slow") for i in ids]
        except OverlayError as e:
            return [DoctorCheck(i, "warn", [], f"could not be checked: {e}", [str(e)], "") for i in ids]
