"""One rule in one place: the live and the recorded service refuse the same bad requests with the same
sentence (core/checks.py, core/dockerd/validation.py), as usage errors (exit 2)."""
from __future__ import annotations

import pytest
from tui_fixtures import STATE

from core import checks
from core.errors import UsageError
from core.live import LiveService
from core.recorded.service import RecordedService


@pytest.fixture
async def services():
    recorded = RecordedService.load(STATE)
    live = LiveService(recorded.inventory)          # nothing is contacted: every case fails before that
    try:
        yield live, recorded
    finally:
        await live.close()


async def _refusal(call) -> str:
    with pytest.raises(UsageError) as err:
        await call()
    assert err.value.exit_code == 2
    return str(err.value)


async def _first(stream):
    async for item in stream:
        return item


@pytest.mark.parametrize("case", ["unknown node", "empty command", "unknown log", "log of unknown node",
                                  "unknown key source", "bad network name", "bad subnet", "unknown create node"])
async def test_live_and_recorded_refuse_alike(services, case):
    calls = {
        "unknown node": lambda s: s.run_command("docker-node9", "true"),
        "empty command": lambda s: s.run_command("docker-node1", "  "),
        "unknown log": lambda s: _first(s.follow_log("docker-node1", "kernel")),
        "log of unknown node": lambda s: _first(s.follow_log("docker-node9", "etcd")),
        "unknown key source": lambda s: s.etcd_keys("v4"),
        "bad network name": lambda s: s.create_network("bad name"),
        "bad subnet": lambda s: s.create_network("ok", subnet="198.19.7.1/24"),
        "unknown create node": lambda s: s.create_network("ok", subnet="198.19.7.0/24", node="docker-node9"),
    }
    live, recorded = services
    said = [await _refusal(lambda s=s: calls[case](s)) for s in (live, recorded)]
    assert said[0] == said[1], said


def test_capture_nodes_are_checked_in_one_place():
    inv = RecordedService.load(STATE).inventory
    assert [n.name for n in checks.nodes(inv, ["docker-node2", "docker-node2"])] == ["docker-node2"]
    assert len(checks.nodes(inv, None)) == len(inv.nodes)
    with pytest.raises(UsageError, match="unknown node docker-node9"):
        checks.nodes(inv, ["docker-node9"])


def test_apply_names_and_the_network_rules_exist_once():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for pattern in ("def apply_names", "def subnet_problem", "def validate(", "PREDEFINED = "):
        hits = subprocess.run(["grep", "-rln", "--include=*.py", pattern, "core", "tui"], cwd=root,
                              capture_output=True, text=True).stdout.split()
        assert len(hits) == 1, (pattern, hits)
