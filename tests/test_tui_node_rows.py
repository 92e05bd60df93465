"""The Nodes pane asks each node on its own (issue 12): rows arrive as their nodes answer, a hung node never
holds up the others' rows or refreshes, a node that stops answering is down within two refreshes, and
`node remove` asks first, refuses what would break quorum, and keeps the console running.

Deterministic: the recorded lab, with nodes made to hang on events the test sets; refreshes are driven by
calling the pane's timer tick directly; waits are bounded polls of a condition, never sleeps.
"""
from __future__ import annotations

import asyncio
from collections import Counter

from tui_fixtures import SIZE, STATE, press, recorded_app, settle, steady, table_cells, table_rows

from core.errors import NodeUnreachable
from core.recorded.service import RecordedService
from tui.app import OverlayApp
from tui.commands import BindingCommands
from tui.modals.confirm import ConfirmModal
from tui.panes.nodes import NodeAnswered, NodesPane
from tui.screens.node_removal import NodeRemovalScreen

NODES = ["docker-node1", "docker-node2", "docker-node3"]


class GatedService(RecordedService):
    """A node answers only once its gate is open (a closed gate: the node hangs, as behind a link down)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.status_timeout = 3600.0          # the pane's own marking is under test, not the service's timeout
        self.gates = {n: asyncio.Event() for n in NODES}
        self.asked: Counter[str] = Counter()

    def open_all(self) -> None:
        for g in self.gates.values():
            g.set()

    async def node_status(self, name: str):
        self.asked[name] += 1
        await self.gates[name].wait()
        return await super().node_status(name)


def gated_app(**kw) -> tuple[OverlayApp, GatedService]:
    svc = GatedService.load(STATE, **kw)
    return steady(OverlayApp(svc, refresh_timers=False)), svc


async def until(pilot, cond, what: str, rounds: int = 500) -> None:
    """Process messages until ``cond()`` holds (bounded)."""
    for _ in range(rounds):
        if cond():
            return
        await pilot.pause()
    raise AssertionError(f"never happened: {what}")


def states(app) -> dict[str, str]:
    return {r["node"]: r["state"] for r in table_cells(app, "#nodes-table")}


async def test_rows_arrive_as_their_nodes_answer_in_any_order():
    app, svc = gated_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: sum(svc.asked.values()) == 3, "every node asked at once")
        assert app.query_one("#nodes").border_subtitle == "loading…"
        svc.gates["docker-node3"].set()
        await until(pilot, lambda: states(app).get("docker-node3") == "● up", "node3's row")
        # the rows keep the inventory's order; the nodes that have not answered say so
        assert [r[0] for r in table_rows(app, "#nodes-table")] == NODES
        assert states(app) == {"docker-node1": "… asking", "docker-node2": "… asking", "docker-node3": "● up"}
        assert "1/3 reachable · 2 not answered yet" in str(app.query_one("#nodes").border_subtitle)
        assert app.first_paint_seconds is None        # the first full paint waits for every row
        svc.gates["docker-node1"].set()
        await until(pilot, lambda: states(app)["docker-node1"] == "● up", "node1's row")
        assert states(app)["docker-node2"] == "… asking"
        svc.gates["docker-node2"].set()
        await settle(pilot)
        assert set(states(app).values()) == {"● up"}
        assert str(app.query_one("#nodes").border_subtitle) == "3/3 reachable"


async def test_a_hung_node_holds_neither_the_other_rows_nor_their_refreshes():
    app, svc = gated_app()
    svc.gates["docker-node1"].set()
    svc.gates["docker-node3"].set()
    messages: list = []
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        pane = app.query_one(NodesPane)
        await until(pilot, lambda: states(app).get("docker-node1") == "● up" and states(app).get("docker-node3") == "● up",
                    "the answering nodes' rows while node2 hangs")
        for period in (1, 2, 3):
            svc.state["nodes"][0]["latency_ms"] = 10.0 + period   # node1 answers something new each period
            pane._tick()                                          # what the 5 s timer does
            await until(pilot, lambda p=period: svc.asked["docker-node1"] == p + 1
                        and table_cells(app, "#nodes-table")[0]["latency"] == f"{10.0 + p:.1f} ms",
                        f"node1 refreshed in period {period}")
            assert svc.asked["docker-node3"] == period + 1
            assert svc.asked["docker-node2"] == 1                 # never asked again while its asking hangs
        answered = Counter(m.status.name for m in messages if isinstance(m, NodeAnswered))
        assert answered["docker-node1"] == 4 and answered["docker-node3"] == 4 and answered["docker-node2"] == 0
        assert states(app)["docker-node2"] == "✗ down"
        svc.gates["docker-node2"].set()                            # it answers at last: up again
        await settle(pilot)
        assert states(app)["docker-node2"] == "● up"


async def test_a_node_that_stops_answering_is_down_within_two_refreshes_with_why():
    app, svc = gated_app()
    svc.open_all()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.query_one(NodesPane)
        assert set(states(app).values()) == {"● up"}
        svc.gates["docker-node2"].clear()             # node2 stops answering right after this refresh
        pane._tick()                                  # first refresh after it stopped: asked, no answer yet
        await until(pilot, lambda: svc.asked["docker-node1"] == 2 and svc.asked["docker-node2"] == 2, "refresh 1")
        await until(pilot, lambda: states(app)["docker-node1"] == "● up" and "docker-node1" not in pane.asking,
                    "node1 answered refresh 1")
        assert "docker-node2" in pane.asking
        assert states(app)["docker-node2"] == "● up"   # one refresh: not yet (it may only be slow)
        pane._tick()                                  # second refresh: still nothing -> down, saying why
        await until(pilot, lambda: states(app)["docker-node2"] == "✗ down", "node2 down at the second refresh")
        subtitle = str(pane.border_subtitle)
        assert "docker-node2: no answer for 5 s (asked at an earlier refresh, still waiting)" in subtitle
        assert "2/3 reachable" in subtitle
        assert states(app)["docker-node1"] == states(app)["docker-node3"] == "● up"
        assert pane.statuses["docker-node2"].error.startswith("docker-node2: no answer")
        svc.gates["docker-node2"].set()
        await settle(pilot)
        assert states(app)["docker-node2"] == "● up"


async def test_the_service_yields_a_silent_node_as_down_after_its_own_timeout():
    svc = GatedService.load(STATE)
    svc.status_timeout = 0.2
    svc.gates["docker-node1"].set()
    svc.gates["docker-node3"].set()
    got = [s async for s in svc.node_statuses()]
    assert [s.name for s in got] == ["docker-node1", "docker-node3", "docker-node2"]
    assert got[2].reachable is False and got[2].error.startswith("docker-node2: no answer within 0.2 s")
    only = [s async for s in svc.node_statuses(["docker-node3"])]
    assert [s.name for s in only] == ["docker-node3"]


# --- node remove ------------------------------------------------------------------------------
def confirm_text(app) -> str:
    return str(app.screen.query_one(".question").render())


def removal_log(app) -> str:
    """The removal screen's log, its wrapped lines joined (whitespace made single)."""
    return " ".join(" ".join(str(line.text) for line in app.screen.query_one("#node-removal-log").lines).split())


async def test_remove_node_asks_first_and_cancel_changes_nothing():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "down", "down", "D")
        assert isinstance(app.screen, ConfirmModal)
        text = confirm_text(app)
        for said in ("Remove docker-node3 from the cluster?", "probe container is removed", "member-remove",
                     "2 healthy of 2 members remain: quorum kept", "dockerd restarts", "[[node]] table",
                     app.service.inventory.path):
            assert said in text, (said, text)
        await press(pilot, "n")
        assert not isinstance(app.screen, ConfirmModal)
        assert [r[0] for r in table_rows(app, "#nodes-table")] == NODES
        assert len((await app.service.etcd_cluster()).members) == 3


async def test_remove_node_confirmed_shows_its_lines_and_the_row_goes():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "down", "down", "D", "y")
        assert isinstance(app.screen, NodeRemovalScreen)
        text = removal_log(app)
        assert "✓ docker-node3: probe container probe-docker-node3 removed" in text
        assert "etcd member" in text and "of docker-node3 removed (member-remove)" in text
        assert "docker-node3 removed. This console still holds the inventory" in text
        await press(pilot, "escape")
        assert not isinstance(app.screen, NodeRemovalScreen)
        assert [r[0] for r in table_rows(app, "#nodes-table")] == NODES[:2]
        assert len(table_rows(app, "#etcd-table")) == 2          # the panes were refreshed
        assert app.is_running


class RefusingEtcdService(RecordedService):
    """etcd cannot be read before asking; the recorded members other than node1 are unhealthy."""

    async def etcd_cluster(self):
        raise NodeUnreachable("docker-node2", "connection refused on 198.18.0.2:22")


def _unhealthy_but(svc: RecordedService, name: str) -> None:
    for m in svc.state["etcd"]["members"]:
        m["healthy"] = m["name"] == name


async def test_remove_node_that_would_break_quorum_is_refused_before_asking():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _unhealthy_but(app.service, "docker-node1")
        await press(pilot, "1", "D")
        assert not isinstance(app.screen, ConfirmModal)
        assert any("docker-node1 not removed: removing docker-node1's etcd member would leave 0 healthy of 2 "
                   "members, no quorum" in n.message for n in app._notifications)
        assert len((await app.service.etcd_cluster()).members) == 3 and app.is_running


async def test_a_refusal_by_the_removal_itself_is_shown_and_the_console_keeps_running():
    svc = RefusingEtcdService.load(STATE)
    _unhealthy_but(svc, "docker-node1")
    app = steady(OverlayApp(svc, refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "D")
        assert isinstance(app.screen, ConfirmModal)
        assert "etcd could not be read now (docker-node2: connection refused" in confirm_text(app)
        await press(pilot, "y")
        assert isinstance(app.screen, NodeRemovalScreen)
        text = removal_log(app)
        assert "✗ docker-node1 not removed: removing docker-node1's etcd member would leave 0 healthy" in text
        await press(pilot, "escape")
        assert [r[0] for r in table_rows(app, "#nodes-table")] == NODES
        assert app.is_running


class SlowRemovalService(RecordedService):
    release: asyncio.Event

    async def remove_node(self, name: str) -> list[str]:
        await self.release.wait()
        return await super().remove_node(name)


async def test_the_removal_screen_stays_until_the_removal_ends():
    svc = SlowRemovalService.load(STATE)
    svc.release = asyncio.Event()
    app = steady(OverlayApp(svc, refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("1", "down", "D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirm")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, NodeRemovalScreen), "the removal screen")
        await pilot.press("escape")
        await until(pilot, lambda: any("still running" in n.message for n in app._notifications), "the notice")
        assert isinstance(app.screen, NodeRemovalScreen)
        svc.release.set()
        await settle(pilot)
        await press(pilot, "escape")
        assert [r[0] for r in table_rows(app, "#nodes-table")] == ["docker-node1", "docker-node3"]


async def test_read_only_refuses_node_remove_and_the_palette_says_so():
    app = recorded_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "D")
        assert not isinstance(app.screen, ConfirmModal)
        assert any("removing a node is not available: this console is read-only" in n.message
                   for n in app._notifications)
        texts = [hit.text async for hit in BindingCommands(app.screen).discover()]
        assert "Nodes: Remove node (asks first) (read-only: unavailable)" in texts
    writable = recorded_app()
    async with writable.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        for ch in "remove node":
            await pilot.press(ch if ch != " " else "space")
        await settle(pilot)
        await press(pilot, "enter")
        assert isinstance(writable.screen, ConfirmModal)
        assert "Remove docker-node1 from the cluster?" in confirm_text(writable)


async def test_a_node_added_to_the_inventory_is_shown_as_joining_with_the_next_apply():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "not in the cluster yet" not in str(app.query_one("#nodes").border_subtitle)
        app.service.state["nodes"][2].update(store_mode="local", etcd_state="not installed")
        await press(pilot, "1", "r")
        assert (str(app.query_one("#nodes").border_subtitle)
                == "3/3 reachable · docker-node3 not in the cluster yet: joins with the next runbook apply (b)")
        for n in app.service.state["nodes"]:
            n["store_mode"] = "local"
        await press(pilot, "r")
        assert "no node uses the cluster store yet: apply the runbook (b)" in str(app.query_one("#nodes").border_subtitle)


async def test_a_node_asked_by_r_just_before_a_tick_gets_a_whole_period_before_it_is_called_down():
    app, svc = gated_app()
    svc.open_all()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.query_one(NodesPane)
        svc.gates["docker-node2"].clear()
        await pilot.press("1", "r")                   # asked now, between two ticks
        await until(pilot, lambda: svc.asked["docker-node2"] == 2 and "docker-node1" not in pane.asking, "the r")
        pane._tick()                                  # the timer fires right after: not a whole period yet
        await until(pilot, lambda: svc.asked["docker-node1"] == 3, "the tick's asking")
        assert states(app)["docker-node2"] == "● up"
        pane._tick()
        await until(pilot, lambda: states(app)["docker-node2"] == "✗ down", "down at the next tick")
        assert svc.asked["docker-node2"] == 2          # one asking in flight, never a second
        svc.gates["docker-node2"].set()
        await settle(pilot)
