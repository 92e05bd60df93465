"""The console on the live lab: apply the runbook from the runbook screen, the panes fill with the lab's
nodes, members and networks, and a network created from the form appears on every node."""
from __future__ import annotations

import pytest
from tui_fixtures import SIZE, press, settle, steady, table_cells, table_rows

from core.live import LiveService
from tui.app import OverlayApp
from tui.modals.confirm import ConfirmModal
from tui.modals.network_form import NetworkForm
from tui.screens.runbook import RunbookScreen

pytestmark = pytest.mark.lab


async def test_console_on_the_live_lab(lab2):
    service = LiveService(lab2.inventory)
    app = steady(OverlayApp(service, refresh_timers=False))  # no timers or watch: the test decides when to refresh
    nodes = [n.name for n in lab2.inventory.nodes]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.first_paint_seconds is not None
        rows = table_rows(app, "#nodes-table")
        assert [r[0] for r in rows] == nodes and all(r[1] == "● up" for r in rows)

        await press(pilot, "b")                       # the runbook, applied from its screen
        assert isinstance(app.screen, RunbookScreen)
        await press(pilot, "a")
        assert isinstance(app.screen, ConfirmModal)
        await press(pilot, "y")
        steps = table_rows(app, "#steps")
        assert all(r[1] in ("✓ ok", "– n/a") for r in steps), steps
        await press(pilot, "escape")
        await settle(pilot)

        rows = table_cells(app, "#nodes-table")
        assert all(r["store"] == "etcd (classic)" and r["etcd"] == "running" for r in rows), rows
        members = table_rows(app, "#etcd-table")
        assert sorted(r[0].lstrip("★ ").strip() for r in members) == nodes
        assert all(r[1] == "● ok" for r in members) and sum(r[0].startswith("★") for r in members) == 1
        nets = {r["name"]: r for r in table_cells(app, "#networks-table")}
        demo = lab2.inventory.cluster.network
        assert (nets[demo]["driver"], nets[demo]["scope"], nets[demo]["nodes"]) == ("overlay", "global", "12")

        name = "tui-lab-net"
        await press(pilot, "3", "c")
        form = app.screen
        assert isinstance(form, NetworkForm)
        form.query_one("#name").value = name
        form.query_one("#subnet").value = "198.19.201.0/24"
        await press(pilot, "enter")
        try:
            assert not isinstance(app.screen, NetworkForm)
            created = next(n for n in await service.networks() if n.name == name)
            assert sorted(created.nodes) == nodes and created.scope == "global"
            row = {r["name"]: r for r in table_cells(app, "#networks-table")}[name]
            assert row["subnet"] == "198.19.201.0/24" and row["nodes"] == "12"
            assert any(f"{name} created" in n.message and f"{len(nodes)}/{len(nodes)} nodes" in n.message
                       for n in app._notifications)
        finally:
            table = app.query_one("#networks-table")
            keys = [rk.value for rk in table.rows]
            if created_id := next((n.id for n in await service.networks() if n.name == name), None):
                table.move_cursor(row=keys.index(created_id))
                await press(pilot, "D", "y")
        assert name not in [n.name for n in await service.networks()]
        assert name not in [r[0] for r in table_rows(app, "#networks-table")]


def test_record_writes_state_the_console_replays(lab2, tmp_path):
    """`overlay-tui record` on the live lab writes what RecordedService replays, and the console shows it."""
    import asyncio
    import subprocess
    import sys

    from core.recorded.service import RecordedService

    out = tmp_path / "state.json"
    index = lab2.inventory.nodes[0].address.split(".")[2]
    res = subprocess.run([sys.executable, "-m", "tui.launcher", "--inventory", lab2.inventory_path, "record",
                          "--out", str(out), "--apply", "--ping", "--rewrite", f"198.18.{index}.=198.18.0."],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    svc = RecordedService.load(out)
    nodes = [n.name for n in lab2.inventory.nodes]
    assert [n.address for n in svc.inventory.nodes] == [f"198.18.0.{i}" for i in range(1, len(nodes) + 1)]

    async def check() -> None:
        assert [n.name for n in await svc.nodes()] == nodes
        cluster = await svc.etcd_cluster()
        assert cluster.healthy and sorted(m.name for m in cluster.members) == nodes
        demo = next(n for n in await svc.networks() if n.name == lab2.inventory.cluster.network)
        assert sorted(demo.nodes) == nodes and demo.vni is not None
        assert any(k.key.startswith("/docker/network/v1.0/network/") for k in await svc.etcd_keys("v2"))
        assert all(p.loss == 0 for p in await svc.ping_matrix())
        events = [e async for e in svc.runbook_apply()]
        assert events and all(e.step.ok is not False for e in events)
        app = steady(OverlayApp(svc, refresh_timers=False))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert [r[0] for r in table_rows(app, "#nodes-table")] == nodes
            assert len(table_rows(app, "#etcd-table")) == len(nodes)

    asyncio.run(check())
