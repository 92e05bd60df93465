"""The runbook's settling and retries, against a fake :class:`core.runbook.steps.RunbookTarget`."""
from __future__ import annotations

import pytest

from core.access import WriteGuard
from core.errors import DockerError
from core.model import ClusterSpec, Inventory
from core.runbook.runbook import Runbook
from core.runbook.steps import STEPS, Step, apply_probes


async def _no_commands(rb: Runbook) -> list[str]:
    return []


class Converging:
    """A verification that passes from the ``passes_at``-th call on."""

    def __init__(self, passes_at: int) -> None:
        self.calls, self.passes_at = 0, passes_at

    async def __call__(self, rb: Runbook):
        self.calls += 1
        return self.calls >= self.passes_at, f"call {self.calls}"


class FakeTarget:
    """Only what the probe step uses: start_probes fails ``failures`` times, then starts every probe."""

    def __init__(self, failures: int = 0, matrix: list | None = None) -> None:
        self.inventory = Inventory(path="x", nodes=(), cluster=ClusterSpec())
        self.calls, self.failures, self.matrix = 0, failures, matrix or []
        self.again: list[frozenset[str]] = []

    async def ping_matrix(self) -> list:
        return self.matrix

    async def start_probes(self, network: str, again: frozenset[str] = frozenset()) -> dict[str, str]:
        self.calls += 1
        self.again.append(again)
        if self.calls <= self.failures:
            raise DockerError("docker-node2: Docker refused: etcd cluster is unavailable")
        return {"docker-node1": "kept", "docker-node2": "started"}


def _runbook(target: FakeTarget) -> Runbook:
    return Runbook(target, WriteGuard(), settle_interval=0.01)  # type: ignore[arg-type]  # a partial fake


async def test_a_settling_step_is_verified_again_until_it_passes():
    verify = Converging(passes_at=3)
    ok, detail = await _runbook(FakeTarget()).settle(Step("probes", "t", _no_commands, verify, settle=5.0))
    assert ok is True and verify.calls == 3 and "converged after" in detail


async def test_settling_is_bounded_and_reports_the_last_failure():
    verify = Converging(passes_at=10**9)
    ok, detail = await _runbook(FakeTarget()).settle(Step("probes", "t", _no_commands, verify, settle=0.1))
    assert ok is False and 2 <= verify.calls < 50 and detail.startswith("call ")


async def test_a_step_without_settle_is_verified_once():
    verify = Converging(passes_at=2)
    ok, _ = await _runbook(FakeTarget()).settle(Step("probes", "t", _no_commands, verify))
    assert ok is False and verify.calls == 1


def test_only_the_probe_step_settles():
    assert [s.id for s in STEPS if s.settle] == ["probes"]


def test_the_two_etcd_steps_share_one_apply():
    by_id = {s.id: s for s in STEPS}
    assert by_id["etcd"].apply is by_id["etcd-health"].apply


async def test_a_probe_start_that_docker_refuses_once_is_tried_again():
    target = FakeTarget(failures=1)
    assert await apply_probes(_runbook(target)) == [("docker-node1", "probe-docker-node1 kept (attempt 2)"),
                                                    ("docker-node2", "probe-docker-node2 started (attempt 2)")]


async def test_a_probe_start_that_keeps_failing_raises_its_error():
    target = FakeTarget(failures=5)
    with pytest.raises(DockerError, match="etcd cluster is unavailable"):
        await apply_probes(_runbook(target))
    assert target.calls == 3


async def test_a_read_only_runbook_refuses_to_apply():
    from core.errors import ReadOnlyError

    rb = Runbook(FakeTarget(), WriteGuard(read_only=True))  # type: ignore[arg-type]
    with pytest.raises(ReadOnlyError, match="applying the runbook is not available"):
        async for _ in rb.apply([]):
            pass


async def test_a_node_that_reaches_the_others_by_address_but_not_by_name_is_named_with_what_to_do():
    from core.model import PingResult
    from core.runbook.steps import names_unknown, verify_probes

    def ok(src: str, dst: str, by: str) -> PingResult:
        return PingResult(src, dst, f"probe-{dst}" if by == "name" else "198.19.1.9", by, 3, 3, 0.2)

    def unknown(src: str, dst: str) -> PingResult:
        return PingResult(src, dst, f"probe-{dst}", "name", 0, 0, None, error=f"ping: bad address 'probe-{dst}'")

    nodes = ["n1", "n2", "n3"]
    results = [unknown(a, b) if a == "n2" and by == "name" else ok(a, b, by)
               for a in nodes for b in nodes if a != b for by in ("name", "address")]
    assert names_unknown(results) == ["n2"]

    class Target:
        async def ping_matrix(self):
            return results

    rb = Runbook(Target(), WriteGuard())  # type: ignore[arg-type]  # a partial fake
    ok_, detail = await verify_probes(rb)
    assert ok_ is False
    assert detail.startswith("n2->probe-n1 (name): ping: bad address 'probe-n1'; n2->probe-n3 (name)"), detail
    assert detail.endswith("n2's probe reaches every other by address but resolves none of their names: its dockerd "
                           "has not learned the other hosts' containers from the store (their names are not in its "
                           "DNS); restart Docker on n2, then apply again"), detail
    # a node that loses packets by address too is not that case: no such sentence
    lossy = [PingResult(r.src, r.dst, r.target, r.by, 3, 1, 0.2) if r.src == "n2" and r.by == "address" else r
             for r in results]
    assert names_unknown(lossy) == []


async def test_apply_starts_again_the_probe_of_a_node_that_resolves_no_name():
    from core.model import PingResult

    def ping(src: str, dst: str, by: str) -> PingResult:
        if src == "docker-node2" and by == "name":
            return PingResult(src, dst, f"probe-{dst}", by, 0, 0, None, error=f"ping: bad address 'probe-{dst}'")
        return PingResult(src, dst, f"probe-{dst}", by, 3, 3, 0.2)

    nodes = ["docker-node1", "docker-node2"]
    target = FakeTarget(matrix=[ping(a, b, by) for a in nodes for b in nodes if a != b for by in ("name", "address")])
    lines = await apply_probes(_runbook(target))
    assert target.again == [frozenset({"docker-node2"})]
    assert ("docker-node2", "probe-docker-node2 started (it resolved none of the other probes' names)") in lines
    assert ("docker-node1", "probe-docker-node1 kept") in lines
    healthy = FakeTarget()                      # no probe running yet (a fresh apply): nothing started again
    await apply_probes(_runbook(healthy))
    assert healthy.again == [frozenset()]
