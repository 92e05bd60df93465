"""Pilot tests of the console's main screen on recorded lab state: panes, layout, keys, palette, read-only."""
from __future__ import annotations

from tui_fixtures import SIZE, STATE, press, recorded_app, settle, steady, table_cells, table_rows

from core.errors import NodeUnreachable
from core.recorded.service import RecordedService
from tui.app import OverlayApp
from tui.commands import MUTATING, key_table
from tui.messages import FirstPaint, PaneFilled
from tui.modals.network_form import NetworkForm
from tui.panes.nodes import NodeAnswered
from tui.screens.help import HelpScreen
from tui.screens.ping_grid import PingGridScreen


async def test_panes_fill_from_the_service_and_first_paint_is_posted():
    messages = []
    app = recorded_app()
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await settle(pilot)
        nodes = table_rows(app, "#nodes-table")
        assert [r[0] for r in nodes] == ["docker-node1", "docker-node2", "docker-node3"]
        node1 = table_cells(app, "#nodes-table")[0]
        assert node1["state"] == "● up" and node1["store"] == "etcd (classic)" and node1["etcd"] == "running"
        assert node1["kernel"] == "6.18.44-fc-v657" and node1["docker"] == "20.10.24+dfsg1"
        members = table_rows(app, "#etcd-table")
        assert members[0][0] == "★ docker-node1" and all(r[1] == "● ok" for r in members)
        nets = table_rows(app, "#networks-table")
        assert [r[0] for r in nets] == ["demo", "web"]
        demo = table_cells(app, "#networks-table")[0]
        assert (demo["subnet"], demo["vni"], demo["nodes"], demo["scope"]) == ("198.19.0.0/24", "256", "123", "global")
        assert "3 probe-docker-node1" in demo["containers"]
        assert app.query_one("#etcd").border_subtitle.startswith("healthy · 3/3 members ok · leader docker-node1")
        filled = {m.pane_id for m in messages if isinstance(m, PaneFilled)}
        assert filled == {"nodes", "etcd", "networks"}
        firsts = [m for m in messages if isinstance(m, FirstPaint)]
        assert len(firsts) == 1 and firsts[0].seconds == app.first_paint_seconds > 0
        assert app.query_one("#capture") is not None


async def test_refresh_updates_rows_in_place():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.service.state["nodes"][1]["latency_ms"] = 99.5
        table = app.query_one("#nodes-table")
        await press(pilot, "down", "r")
        assert table_rows(app, "#nodes-table")[1][2] == "99.5 ms"
        assert table.cursor_row == 1  # the cursor stays on the row it was on


async def test_maximise_and_restore_each_pane():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key, pane in (("1", "nodes"), ("2", "etcd"), ("3", "networks"), ("4", "capture")):
            await press(pilot, key, "m")
            assert app.screen.maximized is app.query_one(f"#{pane}")
            assert app.screen.maximized.size.height > 25
            await press(pilot, "m")
            assert app.screen.maximized is None
        await press(pilot, "2", "m", "escape")  # Esc restores too
        assert app.screen.maximized is None


async def test_layout_degrades_to_80x24():
    app = recorded_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for pane in ("nodes", "etcd", "networks", "capture"):
            region = app.query_one(f"#{pane}").region
            assert region.width >= 30 and region.height >= 5, (pane, region)
            assert region.bottom <= 23  # above the footer
        assert app.query_one("#nodes-table").row_count == 3


async def test_filter_narrows_the_focused_table_and_escape_clears_it():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "1", "slash", "n", "o", "d", "e", "2")
        assert [r[0] for r in table_rows(app, "#nodes-table")] == ["docker-node2"]
        await press(pilot, "enter")
        assert app.focused is app.query_one("#nodes-table")
        assert "filter “node2”" in str(app.query_one("#nodes").border_subtitle)
        await press(pilot, "escape")
        assert len(table_rows(app, "#nodes-table")) == 3


async def test_local_networks_toggle():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "a")
        names = [r[0] for r in table_rows(app, "#networks-table")]
        assert names[:2] == ["demo", "web"] and "bridge" in names


async def test_help_lists_every_binding_with_an_id():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = key_table(app)
        ids = {r.binding_id for r in rows}
        assert {"app.quit", "app.maximize", "nodes.etcd-log", "etcd.keys", "networks.create", "networks.ping",
                "runbook.apply", "pane.filter"} <= ids
        assert all(r.binding_id for r in rows), [r for r in rows if not r.binding_id]
        assert ids >= MUTATING
        await press(pilot, "escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_keymap_moves_a_key_by_binding_id():
    app = recorded_app(keymap={"networks.create": "n"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "n")
        assert isinstance(app.screen, NetworkForm)
        assert next(r.key for r in key_table(app) if r.binding_id == "networks.create") == "n"


async def test_command_palette_offers_every_action_from_the_binding_table():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        for ch in "ping matrix":
            await pilot.press(ch if ch != " " else "space")
        await settle(pilot)
        await press(pilot, "enter")
        assert isinstance(app.screen, PingGridScreen)


async def test_read_only_shows_a_badge_and_refuses_mutations_with_a_notice():
    app = recorded_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.query_one("#read-only-badge")
        await press(pilot, "3", "c")
        assert not isinstance(app.screen, NetworkForm)
        await press(pilot, "D")
        await press(pilot, "1", "x")
        await press(pilot, "b", "a")
        texts = [n.message for n in app._notifications]
        assert any("creating networks is not available" in t for t in texts)
        assert any("deleting networks is not available" in t for t in texts)
        assert any("running commands on nodes is not available" in t for t in texts)
        assert any("applying the runbook is not available" in t for t in texts)
        assert [n.name for n in await app.service.networks()].count("demo") == 1


class FailingService(RecordedService):
    """The recorded lab where one part fails: etcd unreachable, networks missing, a node down."""

    async def etcd_cluster(self):
        raise NodeUnreachable("docker-node2", "connection refused on 198.18.0.2:22")

    async def networks(self):
        raise RuntimeError("boom")

    async def nodes(self):
        nodes = await super().nodes()
        nodes[2].reachable, nodes[2].error, nodes[2].latency_ms = False, "timed out after 5 s", None
        return nodes


async def test_failures_show_in_their_pane_and_the_app_keeps_running():
    app = steady(OverlayApp(FailingService.load(STATE), refresh_timers=False))
    messages = []
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await settle(pilot)
        etcd = app.query_one("#etcd")
        assert etcd.has_class("-error") and "connection refused" in str(etcd.border_subtitle)
        assert "RuntimeError: boom" in str(app.query_one("#networks").border_subtitle)
        rows = table_rows(app, "#nodes-table")
        # the error is not put in the Latency column (it was cut there mid-word); the subtitle names it once
        assert rows[2][1] == "✗ down" and rows[2][2] == "—"
        assert "docker-node3: timed out after 5 s" in str(app.query_one("#nodes").border_subtitle)
        assert any("connection refused" in n.message for n in app._notifications)
        assert app.first_paint_seconds is not None  # errors count as filled: the screen is complete
        await press(pilot, "1", "r")
        assert any(isinstance(m, NodeAnswered) for m in messages)
        assert app.is_running


async def test_mouse_clicks_focus_a_pane_and_the_footer_runs_keys():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.click("#etcd-table", offset=(5, 2))
        await settle(pilot)
        assert app.focused_pane_id() == "etcd"
        await press(pilot, "m")
        assert app.screen.maximized is app.query_one("#etcd")
        await press(pilot, "m")
        await pilot.click("#networks-table", offset=(5, 1))  # a click on the selected row opens it
        await settle(pilot)
        assert type(app.screen).__name__ == "NetworkDetailScreen"
        await press(pilot, "escape")
        runbook_key = next(k for k in app.screen.query("FooterKey") if k.action == "runbook")
        await pilot.click(runbook_key)
        await settle(pilot)
        assert type(app.screen).__name__ == "RunbookScreen"


async def test_q_quits():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


async def test_palette_marks_mutations_unavailable_when_read_only():
    from tui.commands import BindingCommands

    app = recorded_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        provider = BindingCommands(app.screen)
        texts = [hit.text for hit in [h async for h in provider.discover()]]
        assert "Networks: Create (read-only: unavailable)" in texts
        assert "Networks: Ping matrix" in texts and "Nodes: etcd log" in texts
        assert any(t.startswith("Capture: ") for t in texts)


def test_keymap_file_is_read_and_bad_files_are_named(tmp_path, monkeypatch):
    import pytest

    from core.errors import UsageError
    from tui.app import load_keymap

    monkeypatch.delenv("OVERLAY_TUI_KEYMAP", raising=False)
    good = tmp_path / "keymap.toml"
    good.write_text('[keymap]\n"networks.create" = "n"\n')
    assert load_keymap(str(good)) == {"networks.create": "n"}
    assert load_keymap(str(tmp_path / "none.toml")) == {}
    bad = tmp_path / "bad.toml"
    bad.write_text("[keymap\n")
    with pytest.raises(UsageError, match=str(bad)):
        load_keymap(str(bad))


async def test_a_long_error_stays_a_short_word_and_the_column_shrinks_back_when_the_members_recover():
    import copy

    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        members = app.service.state["etcd"]["members"]
        healthy = copy.deepcopy(members)
        for m in members:
            m.update(id="", healthy=False, leader=False,
                     error="no answer from http://198.18.0.1:2379 (via docker-node1): timed out after 2 s")
        await press(pilot, "2", "r")
        table = app.query_one("#etcd-table")
        # a long error gives a short word in the narrow column (the detail has the whole error)
        assert table.columns["health"].content_width <= len("✗ unhealthy") and len(table.rows) == 3
        assert {r[1] for r in table_rows(app, "#etcd-table")} == {"✗ down"}
        members[:] = healthy
        await press(pilot, "r")
        assert table.columns["health"].content_width < 10
        assert table_rows(app, "#etcd-table")[0][1] == "● ok"
