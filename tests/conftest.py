"""Shared fixtures: the real lab, brought up lazily once per test session.

- ``require_lab()``: skip (or, with OVERLAY_TUI_REQUIRE_LAB=1 as in CI, fail) when this machine
  cannot run a lab (not root, no network namespaces, missing binaries).
- ``lab2`` / ``lab3``: session-scoped 2- and 3-node labs (:class:`LabHandle`), torn down at the end.
  They are shared by every module of the session: a test that changes a node (starts etcd, restarts
  dockerd with a cluster store) must leave it usable; one that needs a pristine lab takes its own
  with ``start_lab(lab_name("x"), n)`` / ``stop_lab(...)``.
- ``lab_service2``: a :class:`core.live.LiveService` on ``lab2``, closed after the test.

The session keeps its lab state in a fresh temp dir (OVERLAY_TUI_STATE, inherited by CLI
subprocesses), so tests never touch the operator's own labs; lab names carry the pytest pid so
engineers running pytest at the same time do not collide. Labs left by a killed pytest session are
swept at the start of the next one.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_STATE_PREFIX = "overlay-tui-test-state-"
# Loaded twice (as `conftest` and as `tests.conftest`), this module must still give one state dir,
# or the second load would hide the session's labs from their own teardown.
_STATE = os.environ.get("OVERLAY_TUI_TEST_SESSION_STATE") or tempfile.mkdtemp(prefix=TEST_STATE_PREFIX)
os.environ["OVERLAY_TUI_TEST_SESSION_STATE"] = _STATE
Path(_STATE, "pytest.pid").write_text(str(os.getpid()))
os.environ["OVERLAY_TUI_STATE"] = _STATE
# `overlay-tui` run as a subprocess (the venv's entry point) imports this checkout's code, also where the
# venv's editable install points at another checkout (a worktree sharing a venv).
_ROOT = str(Path(__file__).resolve().parents[1])
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != _ROOT:
    os.environ["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
_REASON: list[str | None] = []        # cached answer of lab_unavailable_reason()


def lab_name(suffix: str) -> str:
    """A lab name unique to this pytest process (kernel names are machine-wide)."""
    return f"t{os.getpid() % 100000}{suffix}"


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None if it can (root, namespaces, binaries)."""
    if _REASON:
        return _REASON[0]
    from core.errors import LabError
    from core.lab.manager import check_can_run

    reason = None
    try:
        check_can_run()
        probe = f"ot-probe-{os.getpid()}"
        res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if res.returncode != 0:
            reason = f"cannot create a network namespace: {res.stderr.strip()}"
        else:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    except LabError as e:
        reason = str(e)
    _REASON.append(reason)
    return reason


def require_lab() -> None:
    """Skip the test when the lab cannot run here; fail instead when OVERLAY_TUI_REQUIRE_LAB=1 (CI)."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("OVERLAY_TUI_REQUIRE_LAB") == "1":
        pytest.fail(f"the lab is required (OVERLAY_TUI_REQUIRE_LAB=1) but cannot run: {reason}", pytrace=False)
    pytest.skip(f"lab unavailable: {reason}")


@dataclass
class LabHandle:
    """An up lab as tests use it."""

    name: str
    inventory_path: str
    inventory: object          # core.model.Inventory
    nodes: tuple               # core.model.NodeSpec, docker-node1..N
    info: object               # core.lab.manager.LabInfo: namespaces, pids, subnet, seat


def start_lab(name: str, nodes: int) -> LabHandle:
    """Bring a lab up through the core API (used by the fixtures; tests may use it for extra labs)."""
    from core.lab.manager import lab_up

    info = asyncio.run(lab_up(name, nodes))
    inv = info.inventory()
    return LabHandle(name=name, inventory_path=info.inventory_path, inventory=inv, nodes=inv.nodes, info=info)


def stop_lab(name: str) -> None:
    from core.lab.manager import lab_down

    lab_down(name)


def _lab_fixture(suffix: str, nodes: int):
    require_lab()
    name = lab_name(suffix)
    try:
        yield start_lab(name, nodes)
    finally:
        stop_lab(name)


@pytest.fixture(scope="session")
def lab2():
    """A 2-node lab (docker-node1, docker-node2) for the whole session."""
    yield from _lab_fixture("a", 2)


@pytest.fixture(scope="session")
def lab3():
    """A 3-node lab (docker-node1..3) for the whole session."""
    yield from _lab_fixture("b", 3)


@pytest.fixture
async def lab_service2(lab2):
    """A LiveService on lab2, closed after the test."""
    from core.live import LiveService

    svc = LiveService(lab2.inventory)
    try:
        yield svc
    finally:
        await svc.close()


def _session_gone(state_root: Path) -> bool:
    try:
        os.kill(int((state_root / "pytest.pid").read_text()), 0)
    except (OSError, ValueError):
        return True
    return False


async def _classic(inventory) -> None:
    """etcd on every node, then Docker on the cluster store (both idempotent)."""
    from core.live import LiveService

    svc = LiveService(inventory)
    try:
        await svc.etcd_apply()
        await svc.docker_store_apply()
    finally:
        await svc.close()


@pytest.fixture(scope="module")
def classic2(lab2):
    """lab2 with etcd running and every dockerd on the cluster store."""
    asyncio.run(_classic(lab2.inventory))
    return lab2


@pytest.fixture(scope="module")
def classic3(lab3):
    """lab3 with etcd running and every dockerd on the cluster store."""
    asyncio.run(_classic(lab3.inventory))
    return lab3


def _sweep_stale_test_labs() -> None:
    """Take down labs whose pytest session (under a test state dir) is gone, then its state dir."""
    for root in Path(tempfile.gettempdir()).glob(TEST_STATE_PREFIX + "*"):
        if root != Path(_STATE) and (root / "pytest.pid").is_file() and _session_gone(root) \
                and not any((root / "labs").glob("*/state.json")):
            shutil.rmtree(root, ignore_errors=True)
    for owner in Path("/run/overlay-tui/labs").glob("*.json"):
        try:
            lab_dir = Path(json.loads(owner.read_text())["dir"])
        except (OSError, ValueError, KeyError):
            continue
        state_root = lab_dir.parent.parent
        if not state_root.name.startswith(TEST_STATE_PREFIX) or state_root == Path(_STATE):
            continue
        if not _session_gone(state_root):
            continue
        subprocess.run([str(Path(sys.executable).parent / "overlay-tui"), "lab", "down", "--name", owner.stem],
                       env={**os.environ, "OVERLAY_TUI_STATE": str(state_root)}, capture_output=True)
        shutil.rmtree(state_root, ignore_errors=True)


def pytest_sessionstart(session) -> None:
    if os.geteuid() == 0:
        _sweep_stale_test_labs()


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(_STATE, ignore_errors=True)
