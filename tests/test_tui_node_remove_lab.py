"""`node remove` from the console on a real lab (issue 12): the Nodes pane asks first (saying what will happen
and that quorum is kept), runs the removal on the live nodes and shows its lines; the node leaves the pane,
etcd and the inventory file; a removal that would break quorum is refused before anything changes.

A lab of its own (the removal rewrites the inventory). Every wait is a bounded poll of what the console shows.
"""
from __future__ import annotations

import time

import pytest
from conftest import lab_name, require_lab, start_lab, stop_lab
from test_faults_lab import apply_ok, kill_in_node
from tui_fixtures import SIZE, settle, steady, table_rows

from core.errors import InventoryError
from core.inventory import load_inventory
from core.live import LiveService
from tui.app import OverlayApp
from tui.modals.confirm import ConfirmModal
from tui.screens.node_removal import NodeRemovalScreen

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def remove_lab():
    require_lab()
    name = lab_name("r")
    try:
        lab = start_lab(name, 3)
        apply_ok(lab)
        yield lab
    finally:
        stop_lab(name)


async def until(pilot, cond, what: str, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"not within {seconds:g} s: {what}")


async def members(inventory) -> list[str]:
    svc = LiveService(inventory)
    try:
        return sorted(m.name for m in (await svc.etcd_cluster()).members)
    finally:
        await svc.close()


def log_text(app) -> str:
    return " ".join(" ".join(str(line.text) for line in app.screen.query_one("#node-removal-log").lines).split())


async def test_remove_a_node_from_the_console_then_a_removal_that_would_break_quorum_is_refused(remove_lab):
    lab = remove_lab
    app = steady(OverlayApp(LiveService(lab.inventory), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert [r[0] for r in table_rows(app, "#nodes-table")] == ["docker-node1", "docker-node2", "docker-node3"]
        table = app.query_one("#nodes-table")
        table.move_cursor(row=2)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirm", 30)
        question = " ".join(str(app.screen.query_one(".question").render()).split())
        assert "Remove docker-node3 from the cluster?" in question and "quorum kept" in question, question
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, NodeRemovalScreen) and not app.screen.running,
                    "the removal's end", 180)
        text = log_text(app)
        assert "✗" not in text, text
        for said in ("probe container", "of docker-node3 removed (member-remove)",
                     "docker-node3 removed from the inventory"):
            assert said in text, (said, text)
        assert "restart the console" in text, text
        await pilot.press("escape")
        await settle(pilot)
        assert [r[0] for r in table_rows(app, "#nodes-table")] == ["docker-node1", "docker-node2"]
        # this console's inventory still lists docker-node3: its runbook would add it back, so it is refused
        with pytest.raises(InventoryError, match="docker-node3 was removed .* restart the console"):
            await app.service.runbook_plan()
    after = load_inventory(lab.inventory_path)
    assert [n.name for n in after.nodes] == ["docker-node1", "docker-node2"]
    assert await members(after) == ["docker-node1", "docker-node2"]

    # etcd killed on docker-node2: removing docker-node1's member would leave 0 healthy of 1 -> refused first
    kill_in_node(lab, "docker-node2", comm="etcd")
    app = steady(OverlayApp(LiveService(after), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("1", "D")
        await until(pilot, lambda: any("not removed" in n.message for n in app._notifications), "the refusal", 60)
        assert not isinstance(app.screen, ConfirmModal)
        refusal = next(n.message for n in app._notifications if "not removed" in n.message)
        assert "would leave 0 healthy of 1 members, no quorum" in refusal, refusal
        assert app.is_running
    assert [n.name for n in load_inventory(lab.inventory_path).nodes] == ["docker-node1", "docker-node2"]
