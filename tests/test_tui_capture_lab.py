"""The capture pane on the live 2-node lab: real VXLAN frames of the probes' pings fill the list, named;
the flows view and the detail screen show them; stopping leaves no tcpdump on the nodes."""
from __future__ import annotations

import asyncio

import pytest
from scenes import steady

from core.live import LiveService
from tui.app import OverlayApp
from tui.capture.pane import CapturePane
from tui.screens.frame_detail import FrameDetailScreen

pytestmark = pytest.mark.lab
SIZE = (120, 36)


async def _apply(inventory) -> dict:
    svc = LiveService(inventory)
    try:
        return {e.step.id: e.step async for e in svc.runbook_apply()}
    finally:
        await svc.close()


async def until(pilot, cond, what: str, seconds: float = 30.0) -> None:
    """Let the app run until ``cond()`` holds (polling its state, bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def test_capture_pane_on_the_live_lab(lab2):
    steps = await _apply(lab2.inventory)
    assert steps["probes"].ok, steps["probes"].detail
    service = LiveService(lab2.inventory)
    app = steady(OverlayApp(service, refresh_timers=False))
    nodes = [n.name for n in lab2.inventory.nodes]
    async with app.run_test(size=SIZE) as pilot:
        net = next(n for n in await service.networks() if n.name == lab2.inventory.cluster.network)
        probes = {c.ip.split("/")[0]: c.name for c in net.containers if c.ip}
        pane = app.query_one(CapturePane)
        pane.frame_list.focus()
        pane.start_capture(nodes)
        await until(pilot, lambda: pane.note.startswith("capturing on"), "the remote captures to start")
        pings = asyncio.create_task(service.ping_matrix())
        await until(pilot, lambda: any(f.vni == net.vni for f in pane.ring.items()), "frames of the network")
        await pings
        pane.redraw()
        frames = [f for f in pane.ring.items() if f.vni == net.vni and f.proto == "ICMP"]
        assert frames, [(f.proto, f.vni) for f in pane.ring.items()][:10]
        f = frames[0]
        assert f.network == net.name and f.node in nodes
        assert {f.outer_src_name, f.outer_dst_name} <= set(nodes)
        assert f.inner_src in probes and f.src_name.startswith(probes[f.inner_src])
        assert pane.state == "capturing" and pane.frame_list.row_count == pane.ring.total

        pane.apply_filter(f"vni={net.vni} proto=icmp")
        assert pane.frame_list.row_count == len([x for x in pane.ring.items() if x.vni == net.vni and x.proto == "ICMP"])
        await pilot.press("home", "enter")
        await until(pilot, lambda: isinstance(app.screen, FrameDetailScreen), "the detail screen")
        layers = app.screen.query_one("#frame-layers-text")
        await until(pilot, lambda: "VXLAN" in str(layers.render()), "scapy's layers")
        await pilot.press("escape")

        await pilot.press("F")
        await until(pilot, lambda: pane.flows_view.row_count > 0, "the flows")
        await pilot.press("F")

        await pilot.press("x")
        await until(pilot, lambda: pane.state == "stopped", "the stop")
        await until(pilot, lambda: pane._worker.is_finished, "the capture worker to close the stream")
        for node in lab2.inventory.nodes:
            res = await service.pool.run(node, "pgrep -x tcpdump || true")
            assert res.stdout.strip() == "", f"{node.name} still runs tcpdump"
