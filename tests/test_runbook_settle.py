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


class FlakyProbes(RunbookMixin):
    """start_probes that fails ``failures`` times with a DockerError, then starts every probe."""

    settle_interval = 0.01

    def __init__(self, failures: int) -> None:
        from core.model import ClusterSpec, Inventory

        self.inventory = Inventory(path="x", nodes=(), cluster=ClusterSpec())
        self.calls, self.failures = 0, failures

    async def start_probes(self, network: str) -> dict[str, str]:
        from core.errors import DockerError

        self.calls += 1
        if self.calls <= self.failures:
            raise DockerError("docker-node2: Docker refused: etcd cluster is unavailable")
        return {"docker-node1": "kept", "docker-node2": "started"}


async def test_a_probe_start_that_docker_refuses_once_is_tried_again():
    svc = FlakyProbes(failures=1)
    assert await svc._apply_probes() == [("docker-node1", "probe-docker-node1 kept (attempt 2)"),
                                         ("docker-node2", "probe-docker-node2 started (attempt 2)")]


async def test_a_probe_start_that_keeps_failing_raises_its_error():
    import pytest

    from core.errors import DockerError

    svc = FlakyProbes(failures=5)
    with pytest.raises(DockerError, match="etcd cluster is unavailable"):
        await svc._apply_probes()
    assert svc.calls == 3
