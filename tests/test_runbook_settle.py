"""The runbook's settling: a step that converges after its apply is verified again, within a bound."""
from __future__ import annotations

from core.runbook_service import STEPS, RunbookMixin, Step


class Converging(RunbookMixin):
    """Verification that passes from the ``passes_at``-th call on."""

    settle_interval = 0.01

    def __init__(self, passes_at: int) -> None:
        self.calls, self.passes_at = 0, passes_at

    async def _verify_probes(self):
        self.calls += 1
        return self.calls >= self.passes_at, f"call {self.calls}"


async def test_a_settling_step_is_verified_again_until_it_passes():
    svc = Converging(passes_at=3)
    ok, detail = await svc._settle(Step("probes", "t", "_verify_probes", settle=5.0))
    assert ok is True and svc.calls == 3 and "converged after" in detail


async def test_settling_is_bounded_and_reports_the_last_failure():
    svc = Converging(passes_at=10**9)
    ok, detail = await svc._settle(Step("probes", "t", "_verify_probes", settle=0.1))
    assert ok is False and 2 <= svc.calls < 50 and detail.startswith("call ")


async def test_a_step_without_settle_is_verified_once():
    svc = Converging(passes_at=2)
    ok, _ = await svc._settle(Step("probes", "t", "_verify_probes"))
    assert ok is False and svc.calls == 1


def test_only_the_probe_step_settles():
    assert [s.id for s in STEPS if s.settle] == ["probes"]
