"""Pilot tests of every action of the console on recorded lab state (deterministic, no sleeps)."""
from __future__ import annotations

import html
import re

from textual.widgets import Input, Log, RichLog, Static, Tree
from tui_fixtures import SIZE, press, recorded_app, settle, table_cells, table_rows

from core.dockerd.validation import validate
from tui.messages import ClusterChanged
from tui.modals.command import CommandModal
from tui.modals.confirm import ConfirmModal
from tui.modals.network_form import NetworkForm
from tui.screens.key_browser import KeyBrowserScreen
from tui.screens.log import LogScreen
from tui.screens.network_detail import NetworkDetailScreen
from tui.screens.ping_grid import PingGridScreen
from tui.screens.runbook import RunbookProgress, RunbookScreen


async def type_text(pilot, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


async def test_create_network_form_validates_before_sending_then_creates():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "c")
        form = app.screen
        assert isinstance(form, NetworkForm)
        await type_text(pilot, "bad name")
        await press(pilot, "tab")
        await type_text(pilot, "198.19.0.5/24")
        await press(pilot, "enter")
        errors = str(form.query_one("#form-errors", Static).render())
        assert "not a valid Docker name" in errors and "host bits set; did you mean 198.19.0.0/24" in errors
        assert app.screen is form and len(await app.service.networks()) == 14  # nothing was sent
        form.query_one("#name", Input).value = "blue"
        form.query_one("#subnet", Input).value = "198.19.0.0/24"
        await press(pilot, "enter")
        assert "overlaps 198.19.0.0/24 of network demo" in str(form.query_one("#form-errors", Static).render())
        form.query_one("#subnet", Input).value = "198.19.7.0/24"
        await press(pilot, "enter")
        assert not isinstance(app.screen, NetworkForm)
        blue = next(r for r in table_cells(app, "#networks-table") if r["name"] == "blue")
        assert (blue["subnet"], blue["vni"], blue["nodes"]) == ("198.19.7.0/24", "258", "123")
        assert any("blue created" in n.message and "3/3 nodes" in n.message for n in app._notifications)


async def test_create_network_form_cancels_with_escape():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "c", "escape")
        assert not isinstance(app.screen, NetworkForm)
        assert len(await app.service.networks()) == 14


def test_validation_rules():
    ok, errs = validate("demo-2.x_y", "", [])
    assert ok is not None and ok.subnet is None and not errs
    assert validate("", "", [])[1] == ["name: required"]
    assert "predefines" in validate("bridge", "", [])[1][0]
    assert "prefix length" in validate("a", "10.1.0.0", [])[1][0]
    assert "not a CIDR" in validate("a", "10.300.0.0/24", [])[1][0]
    assert "too small" in validate("a", "10.1.0.0/31", [])[1][0]
    assert "-x" in validate("-x", "", [])[1][0]


async def test_delete_asks_first_and_cancel_keeps_the_network():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "down", "D")
        assert isinstance(app.screen, ConfirmModal) and "web" in app.screen.question
        await press(pilot, "enter")  # the focused button is Cancel
        assert "web" in [r[0] for r in table_rows(app, "#networks-table")]
        await press(pilot, "D", "y")
        assert [r[0] for r in table_rows(app, "#networks-table")] == ["demo"]
        assert any("network web deleted" in n.message for n in app._notifications)


async def test_delete_failure_is_a_notification():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "D", "y")  # demo has probes attached: the service refuses
        assert any("deleting demo failed" in n.message and "active endpoints" in n.message for n in app._notifications)
        assert "demo" in [r[0] for r in table_rows(app, "#networks-table")]


async def test_ping_matrix_grid_shows_loss_and_rtt_per_pair():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "p")
        assert isinstance(app.screen, PingGridScreen)
        rows = table_rows(app, "#ping-table")
        assert [r[0] for r in rows] == ["docker-node1", "docker-node2", "docker-node3"]
        assert rows[0][1] == "—" and rows[0][2].startswith("name   0%") and "\naddr   0%" in rows[0][2]
        assert "36/36 replies" in str(app.screen.query_one("#ping-status", Static).render())
        await press(pilot, "escape")
        assert not isinstance(app.screen, PingGridScreen)


async def test_key_browser_shows_both_trees_and_pretty_json():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "2", "k")
        screen = app.screen
        assert isinstance(screen, KeyBrowserScreen)
        tree = screen.query_one(Tree)
        v2, v3 = tree.root.children
        assert "16 keys" in str(v2.label) and "0 keys" in str(v3.label)
        docker = v2.children[0]
        assert str(docker.label) == "docker"
        demo = next(n for n in await app.service.networks() if n.name == "demo")
        overlay_net = next(n for n in tree._tree_nodes.values()
                           if n.data is not None and n.data.key.endswith(f"/overlay/network/{demo.id}"))
        node = overlay_net
        while node is not None:
            node.expand()
            node = node.parent
        await settle(pilot)
        tree.move_cursor(overlay_net)
        await settle(pilot)
        assert screen.shown is overlay_net.data and '"Vni": 256' in screen.shown.value
        drawn = html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot()))
        assert '"Vni":256' in re.sub(r"\s", "", drawn)  # drawn, one field a line, in the value pane


async def test_run_command_shows_output_and_exit_status():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "x")
        assert isinstance(app.screen, CommandModal) and app.screen.node == "docker-node1"
        await type_text(pilot, "docker network ls")
        await press(pilot, "enter")
        lines = [str(s.text) for s in app.screen.query_one(RichLog).lines]
        assert lines[0].startswith("docker-node1$ docker network ls")
        out = "\n".join(lines)
        assert re.search(r"e1e5d5f913f2 +demo +overlay +global", out) and "[exit 0" in out


async def test_follow_log_streams_lines_into_the_log():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "down", "d")
        screen = app.screen
        assert isinstance(screen, LogScreen) and (screen.node, screen.source) == ("docker-node2", "dockerd")
        log = screen.query_one(Log)
        recorded = app.service.state["logs"]["docker-node2/dockerd"]
        assert log.line_count == len(recorded) == 40 and list(log.lines) == recorded
        assert "end of stream" in str(screen.query_one("#log-status", Static).render())
        await press(pilot, "escape")
        assert not isinstance(app.screen, LogScreen)


async def test_runbook_shows_steps_and_applies_with_progress():
    messages = []
    app = recorded_app()
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await settle(pilot)
        await press(pilot, "b")
        screen = app.screen
        assert isinstance(screen, RunbookScreen)
        rows = table_rows(app, "#steps")
        assert len(rows) == 8 and rows[0][1] == "○ not run" and rows[4][2] == "overlay network `demo` exists"
        detail = str(screen.query_one("#step-detail", Static).render())
        assert "docker-node1: ssh root@198.18.0.1:22 hostname" in detail
        await press(pilot, "a")
        assert isinstance(app.screen, ConfirmModal)
        await press(pilot, "y")
        progress = [m for m in messages if isinstance(m, RunbookProgress)]
        assert len({id(m) for m in progress}) == 20  # the hook sees a message at each node it reaches
        rows = table_rows(app, "#steps")
        assert [r[1] for r in rows] == ["✓ ok"] * 8
        log = "\n".join(str(s.text) for s in screen.query_one("#runbook-log", RichLog).lines)
        assert "apply finished: every available step verified" in log
        await press(pilot, "down", "down")
        assert "3 members healthy, leader docker-node1 (already done)" in str(screen.query_one("#step-detail", Static).render())


async def test_watch_refreshes_networks_when_the_cluster_changes():
    """With the watch on, a network created elsewhere appears without a key press."""
    messages = []
    app = recorded_app(watch=True)
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        for _ in range(100):
            await pilot.pause()
            if app.first_paint_seconds is not None and app.service._watchers:
                break
        await app.service.create_network("elsewhere")
        for _ in range(200):
            await pilot.pause()
            if "elsewhere" in [r[0] for r in table_rows(app, "#networks-table")]:
                break
        assert "elsewhere" in [r[0] for r in table_rows(app, "#networks-table")]
        assert any(isinstance(m, ClusterChanged) for m in messages)


async def test_network_detail_lists_containers_per_node():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "enter")
        assert isinstance(app.screen, NetworkDetailScreen) and app.screen.net.name == "demo"
        drawn = html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")
        assert "probe-docker-node2" in drawn and "198.19.0.3" in drawn and "VNI 256" in drawn
        await press(pilot, "escape")
        assert not isinstance(app.screen, NetworkDetailScreen)


async def test_node_and_member_detail_cards():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "down", "enter")
        assert type(app.screen).__name__ == "DetailScreen"
        rows = dict((k, str(v)) for k, v in app.screen.rows)
        assert rows["hostname"] == "docker-node2" and rows["SSH target"] == "root@198.18.0.2:22"
        await press(pilot, "escape", "2", "enter")
        rows = dict((k, str(v)) for k, v in app.screen.rows)
        assert rows["leader"] == "yes" and rows["client URLs"] == "http://198.18.0.1:2379"
        assert rows["cluster health"].endswith("cluster is healthy")
