"""Pilot tests of the Links grid on recorded state (the two-ended recording in tests/fixtures/links_lab.pcap,
25% of docker-node1's frames dropped in the lab switch)."""
from __future__ import annotations

from textual.widgets import Static
from tui_fixtures import SIZE, press, recorded_app, settle, table_rows

from core.model import LinkStat
from tui.commands import key_table
from tui.screens.links import LinksScreen, link_cell, sparkline


async def test_l_on_the_capture_pane_opens_the_grid_with_every_ordered_pair():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "4", "l")
        assert isinstance(app.screen, LinksScreen)
        rows = table_rows(app, "#links-table")
        assert [r[0] for r in rows] == ["docker-node1", "docker-node2", "docker-node3"]
        assert rows[0][1] == "—" and rows[1][2] == "—" and rows[2][3] == "—"
        assert rows[0][2].startswith("loss 21.67%  47/60") and rows[0][3].startswith("loss 33.33%  40/60")
        assert all(rows[i][j].startswith("loss  0.00%") for i in (1, 2) for j in (1, 2, 3) if j != i + 1)
        status = str(app.screen.query_one("#links-status", Static).render())
        assert status.startswith("final · 655 sightings")


async def test_enter_on_a_cell_filters_the_capture_to_that_pair_and_escape_does_not():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "4", "l", "escape")
        pane = app.main_pane("capture")
        assert not isinstance(app.screen, LinksScreen) and pane.filter is None
        await press(pilot, "l", "down", "down", "right", "enter")      # docker-node3 → docker-node1
        assert not isinstance(app.screen, LinksScreen)
        assert pane.filter is not None and pane.filter.text == "src=docker-node3 dst=docker-node1"
        await press(pilot, "l", "right", "enter")                      # the diagonal: refused, grid stays
        assert isinstance(app.screen, LinksScreen)


async def test_the_grid_is_in_help_and_the_palette_by_binding_id():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = {(k.scope, k.description, k.binding_id) for k in key_table(app)}
        assert {("Capture", "Links", "capture.links"), ("Links", "Show the pair's frames", "links.frames")} <= rows


def test_cells_and_sparklines():
    idle = LinkStat("a", "b")
    assert str(link_cell(idle)) == "no traffic"
    row = LinkStat("a", "b", sent=100, received=90, lost=10, delay_p50_ms=0.2, delay_p99_ms=1.5, uncertainty_ms=0.01,
                   loss_history=[None] * 57 + [0.0, 0.5, 0.1], delay_history_ms=[None] * 60)
    lines = str(link_cell(row)).splitlines()
    assert lines[0] == "loss 10.00%  90/100" and lines[1] == "0.200/1.500 ms ±0.010"
    assert lines[2].endswith("▄") and len(lines[2]) == 20
    assert sparkline([0.0, 1.0, None, 2.0], width=4) == "▁▄ █"


async def test_t_on_a_cell_traces_between_the_pairs_probes_and_recorded_state_says_it_cannot():
    from tui.screens.trace import TraceScreen

    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "4", "l", "right", "right", "t")
        screen = app.screen
        assert isinstance(screen, TraceScreen) and (screen.src, screen.dst) == ("probe-docker-node1", "probe-docker-node2")
        body = str(screen.query_one("#trace-body", Static).render())
        assert "needs live nodes" in body
        await press(pilot, "escape")
        assert isinstance(app.screen, LinksScreen)


def test_trace_lines_name_the_last_hop():
    from core.model import TraceHop, TraceResult
    from core.trace.format import trace_lines

    res = TraceResult("a", "b", "n1", "n2", "10.0.0.2", "10.0.0.3",
                      hops=[TraceHop(0, 1, "request leaves a", "n1", 10.0), TraceHop(0, 2, "VXLAN request leaves n1", "n1", 10.00002),
                            TraceHop(0, 3, "VXLAN request arrives at n2", "n2", None)],
                      verdicts=["echo 0: last seen at step 2 (VXLAN request leaves n1); lost before: VXLAN request arrives at n2"])
    lines = trace_lines(res)
    assert lines[2].endswith("+   0.000 ms") and lines[3].endswith("+   0.020 ms") and lines[4].endswith("not seen")
    assert lines[-1].startswith("echo 0: last seen at step 2")


async def test_u_on_the_ping_matrix_shows_the_same_pairs_on_the_underlay():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "3", "p")
        before = table_rows(app, "#ping-table")
        assert not any("wire" in c for r in before for c in r)
        await press(pilot, "u")
        rows = table_rows(app, "#ping-table")
        assert rows[0][2].splitlines()[-1] == "wire  22%  0.005 ms 1-way"
        assert rows[1][1].splitlines()[-1] == "wire   0%  0.005 ms 1-way"
