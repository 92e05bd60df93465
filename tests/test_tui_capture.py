"""Pilot tests and snapshots of the capture pane on recorded state (tests/fixtures/lab_state.json
with the frames of tests/fixtures/capture_small.pcap), plus a scripted service for live behaviour.

Every wait is on the app's messages or workers (``until``), never a fixed sleep.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scenes import steady
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Input

from core.capture.pcap import read_pcap_frames
from core.errors import CaptureError
from core.model import Frame, FrameBatch
from core.recorded.service import RecordedService
from tests.capture_fixture import FIXTURE, expected_counts
from tui.capture.frame_list import FrameList
from tui.capture.pane import CapturePane
from tui.modals.capture_nodes import CaptureNodesModal
from tui.modals.confirm import ConfirmModal
from tui.modals.save_pcap import SavePcapModal
from tui.screens.frame_detail import FrameDetailScreen

STATE = Path(__file__).parent / "fixtures" / "lab_state.json"
SIZE = (120, 36)
ALL_NODES = ["docker-node1", "docker-node2", "docker-node3"]


class ScriptedService(RecordedService):
    """The recorded service whose capture yields whatever the test puts on ``feed`` (None ends it)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.feed: asyncio.Queue[FrameBatch | Exception | None] = asyncio.Queue()
        self.closed = False
        self.capturing_on: list[str] = []

    async def capture(self, nodes: list[str], **_opts) -> AsyncIterator[FrameBatch]:
        self.capturing_on = nodes
        try:
            while (item := await self.feed.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True


class CaptureHost(App):
    """Just the capture pane, full screen, over a service (as OverlayApp provides it)."""

    def __init__(self, service) -> None:
        super().__init__()
        self.service = service
        self.refresh_timers = False
        self.theme = "textual-dark"

    def compose(self) -> ComposeResult:
        yield CapturePane(id="capture")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FrameList).focus()


def recorded_host() -> CaptureHost:
    return CaptureHost(RecordedService.load(STATE))


def scripted_host() -> tuple[CaptureHost, ScriptedService]:
    svc = ScriptedService.load(STATE)
    return CaptureHost(svc), svc


def fixture_frames(node: str = "docker-node1") -> list[Frame]:
    return list(read_pcap_frames(FIXTURE, node=node))


async def until(pilot, cond, what: str = "condition", rounds: int = 1500) -> None:
    """Let the app process its messages until ``cond()`` holds (polling its state, no fixed sleeps);
    after the first rounds each poll also gives threads (scapy's dissection, flows) a few ms."""
    for i in range(rounds):
        if cond():
            return
        await pilot.pause(0.01 if i > 100 else None)
    raise AssertionError(f"timed out waiting for {what}")


async def start_recorded(pilot) -> CapturePane:
    """Start a capture on every node through the node chooser and wait for the replay to end."""
    pane = pilot.app.query_one(CapturePane)
    await pilot.press("s")
    await until(pilot, lambda: isinstance(pilot.app.screen, CaptureNodesModal), "the node chooser")
    await pilot.press("ctrl+s")
    await until(pilot, lambda: pane.state == "ended", "the replay to end")
    await pilot.pause()
    return pane


def visible_numbers(pane: CapturePane) -> list[int]:
    fl = pane.frame_list
    top = fl.scroll_offset.y
    height = fl.scrollable_content_region.height
    return [fl.seq_at(r) + 1 for r in range(top, min(fl.row_count, top + height))]


# --- start, pause, stop ------------------------------------------------------------------------
async def test_start_replays_every_frame_named():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        exp = expected_counts()
        assert pane.nodes == ALL_NODES
        assert pane.ring.total == exp["frames"] and pane.malformed == exp["malformed"]
        assert pane.frame_list.follow and visible_numbers(pane)[-1] == exp["frames"]
        first = pane.ring.get(0)
        assert (first.network, first.src_name, first.outer_src_name) == ("demo", "probe-docker-node1@docker-node1",
                                                                         "docker-node1")
        status = pane.status_text().plain
        assert "ended" in status and f"{exp['frames']} frames" in status and "recording ended" in status


async def test_node_chooser_captures_only_the_ticked_nodes():
    app, svc = scripted_host()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, CaptureNodesModal), "the node chooser")
        await pilot.press("space")                    # untick docker-node1 (the highlighted one)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: svc.capturing_on == ["docker-node2", "docker-node3"], "the capture to start")
        svc.feed.put_nowait(None)


async def test_node_chooser_refuses_no_node():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, CaptureNodesModal), "the node chooser")
        for _ in ALL_NODES:
            await pilot.press("space", "down")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, CaptureNodesModal)
        assert "at least one node" in str(app.screen.query_one(".capture-nodes-error").render())
        await pilot.press("escape")
        assert app.query_one(CapturePane).state == "idle"


async def test_pause_freezes_the_view_and_counts_what_arrives_then_stop_ends_the_stream():
    app, svc = scripted_host()
    frames = fixture_frames()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(CapturePane)
        pane.start_capture(["docker-node1"])
        svc.feed.put_nowait(FrameBatch(frames[:100], notices=["capturing on docker-node1 (veth0)"]))
        await until(pilot, lambda: pane.ring.total == 100, "the first batch")
        pane.redraw()
        await pilot.press("p")
        assert pane.state == "paused"
        shown = visible_numbers(pane)
        svc.feed.put_nowait(FrameBatch(frames[100:150]))
        await until(pilot, lambda: pane.held.total == 50, "frames while paused")
        pane.redraw()
        await pilot.pause()
        assert pane.ring.total == 100 and visible_numbers(pane) == shown
        assert "50 arrived while paused" in pane.status_text().plain
        await pilot.press("p")
        assert pane.state == "capturing" and pane.ring.total == 150
        await pilot.pause()
        assert visible_numbers(pane)[-1] == 150
        await pilot.press("x")
        await until(pilot, lambda: svc.closed, "the capture stream to be closed")
        assert pane.state == "stopped" and pane.ring.total == 150


async def test_notices_and_failures_show_in_the_pane_and_the_app_goes_on():
    app, svc = scripted_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(CapturePane)
        pane.start_capture(["docker-node1", "docker-node2"])
        svc.feed.put_nowait(FrameBatch([], notices=["docker-node2: capture ended: connection lost"]))
        await until(pilot, lambda: "connection lost" in pane.note, "the notice")
        assert any("connection lost" in n.message for n in app._notifications)
        svc.feed.put_nowait(CaptureError("docker-node1: tcpdump exited 1: no such interface"))
        await until(pilot, lambda: pane.state == "failed", "the failure")
        assert "no such interface" in pane.status_text().plain
        assert app.is_running


# --- bounded memory, follow ----------------------------------------------------------------------
async def test_300k_frames_keep_the_ring_at_its_bound_and_count_the_dropped():
    app = recorded_host()
    frames = fixture_frames()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(CapturePane)
        pane.state = "capturing"
        batch = (frames * 15)[:5000]
        for _ in range(60):
            pane.absorb(FrameBatch(batch))
        pane.redraw()
        await pilot.pause()
        assert pane.ring.total == 300_000 and len(pane.ring) == CapturePane.CAPACITY == 100_000
        assert pane.ring.dropped == 200_000
        assert "200,000 dropped" in pane.status_text().plain
        assert pane.frame_list.row_count == 100_000 and visible_numbers(pane)[-1] == 300_000


async def test_scrolling_up_stops_following_and_end_resumes():
    app, svc = scripted_host()
    frames = fixture_frames()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(CapturePane)
        pane.start_capture(["docker-node1"])
        svc.feed.put_nowait(FrameBatch(frames[:200]))
        await until(pilot, lambda: pane.ring.total == 200, "frames")
        pane.redraw()
        await pilot.press("up", "up")
        fl = pane.frame_list
        assert not fl.follow and fl.selected()[0] == 197
        before = visible_numbers(pane)
        svc.feed.put_nowait(FrameBatch(frames[200:300]))
        await until(pilot, lambda: pane.ring.total == 300, "more frames")
        pane.redraw()
        await pilot.pause()
        assert visible_numbers(pane) == before and fl.selected()[0] == 197
        await pilot.press("end")
        pane.redraw()
        await pilot.pause()
        assert fl.follow and visible_numbers(pane)[-1] == 300 and fl.selected()[0] == 299
        svc.feed.put_nowait(None)


# --- filter ---------------------------------------------------------------------------------------
async def test_filter_shows_only_matching_frames_and_keeps_up_with_new_ones():
    app, svc = scripted_host()
    frames = fixture_frames()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(CapturePane)
        pane.start_capture(["docker-node1"])
        svc.feed.put_nowait(FrameBatch(frames[:200]))
        await until(pilot, lambda: pane.ring.total == 200, "frames")
        await pilot.press("slash")
        await pilot.press(*"vni=257 proto=icmp", "enter")
        want = [i + 1 for i, f in enumerate(frames[:200]) if f.vni == 257 and f.proto == "ICMP"]
        assert pane.frame_list.row_count == len(want) and visible_numbers(pane) == want[-len(visible_numbers(pane)):]
        svc.feed.put_nowait(FrameBatch(frames[200:]))
        await until(pilot, lambda: pane.ring.total == len(frames), "more frames")
        pane.redraw()
        assert pane.frame_list.row_count == sum(1 for f in frames if f.vni == 257 and f.proto == "ICMP")
        assert "filter vni=257 proto=icmp: 50 shown" in pane.status_text().plain
        await pilot.press("escape")                  # clears the filter
        assert pane.filter is None and pane.frame_list.row_count == len(frames)
        svc.feed.put_nowait(None)


async def test_an_invalid_filter_is_explained_and_keeps_the_old_one():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        pane.apply_filter("proto=arp")
        await pilot.press("f")
        box = pane.query_one("#capture-filter", Input)
        box.value = ""
        await pilot.press(*"vni=abc", "enter")
        assert box.display and box.has_class("-error")
        assert "'abc' is not a number" in pane.status_text().plain
        assert pane.filter.text == "proto=arp" and pane.frame_list.row_count == expected_counts()["arp"]
        await pilot.press("escape")
        assert not box.display and pane.error is None and pane.filter.text == "proto=arp"


# --- detail, flows, save ----------------------------------------------------------------------------
async def test_enter_opens_the_frame_detail_with_layers_and_hex():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        await pilot.press("home", "enter")
        await until(pilot, lambda: isinstance(app.screen, FrameDetailScreen), "the detail screen")
        screen = app.screen
        await until(pilot, lambda: "VXLAN" in str(screen.query_one("#frame-layers-text").render()), "scapy's layers")
        layers = str(screen.query_one("#frame-layers-text").render())
        assert re.search(r"vni\s+= 0x100", layers) and "198.19.0.2" in layers
        assert str(screen.query_one("#frame-hex-text").render()).startswith("0000  02 00 C6 12")
        assert screen.seq == 0
        await pilot.press("escape")
        assert app.screen is not screen and pane.state == "ended"


async def test_click_opens_the_clicked_frame():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        top = pane.frame_list.scroll_offset.y
        await pilot.click(FrameList, offset=(5, 2))
        await until(pilot, lambda: isinstance(app.screen, FrameDetailScreen), "the detail screen")
        assert app.screen.seq == pane.frame_list.seq_at(top + 2)


async def test_flows_view_lists_flows_with_most_bytes_first():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        await pilot.press("F")
        table = pane.flows_view.query_one(DataTable)
        await until(pilot, lambda: table.row_count > 0, "the flows")
        assert table.row_count == len(app.service.flows(pane.ring.items()))
        first = [str(c) for c in table.get_row_at(0)]
        assert first[0] == "257 web" and first[3] == "UDP" and first[4] == "50"
        summary = str(pane.flows_view.query_one(".flows-summary").render())
        assert "256 demo" in summary and "top talkers" in summary
        await pilot.press("F")
        assert not pane.showing_flows


async def test_save_writes_a_pcap_and_never_clobbers_without_asking(tmp_path):
    app = recorded_host()
    out = tmp_path / "out.pcap"
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        pane.apply_filter("proto=icmp")

        async def save_to(path: str) -> None:
            await pilot.press("w")
            await until(pilot, lambda: isinstance(app.screen, SavePcapModal), "the save modal")
            app.screen.query_one(Input).value = path
            await pilot.press("enter")

        await save_to(str(out))
        await until(pilot, lambda: "saved" in pane.note, "the save")
        saved = list(read_pcap_frames(out))
        assert len(saved) == expected_counts()["icmp"] and all(f.proto == "ICMP" for f in saved)
        before = out.read_bytes()

        pane.apply_filter("")
        await save_to(str(out))                       # exists: asks first
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the overwrite question")
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, SavePcapModal)
        assert "left as it is" in str(app.screen.query_one(".save-pcap-error").render())
        assert out.read_bytes() == before
        await pilot.press("enter")                    # ask again, and say yes this time
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the overwrite question")
        await pilot.press("y")
        await until(pilot, lambda: len(list(read_pcap_frames(out))) == expected_counts()["frames"], "the overwrite")

        await save_to(str(tmp_path / "missing" / "x.pcap"))
        await pilot.pause()
        assert "directory" in str(app.screen.query_one(".save-pcap-error").render())
        assert "does not exist" in str(app.screen.query_one(".save-pcap-error").render())
        await pilot.press("escape")
        assert not (tmp_path / "missing").exists()


async def test_a_failing_save_is_reported(tmp_path):
    app = recorded_host()

    async def broken(frames, path, replace=False):
        raise CaptureError(f"{path}: cannot write: No space left on device")

    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        app.service.save_pcap = broken
        pane._save(pane.ring.items(), str(tmp_path / "x.pcap"))
        await until(pilot, lambda: pane.error is not None, "the error")
        assert "No space left on device" in pane.status_text().plain and app.is_running


async def test_the_console_captures_from_its_capture_pane():
    from tui.app import OverlayApp

    app = steady(OverlayApp(RecordedService.load(STATE), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        pane = await start_recorded(pilot)
        assert pane.ring.total == expected_counts()["frames"]


# --- snapshots ------------------------------------------------------------------------------------
def _snap(snap_compare, run_before) -> bool:
    return snap_compare(recorded_host(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_capture_pane(snap_compare):
    async def run_before(pilot):
        await start_recorded(pilot)
    assert _snap(snap_compare, run_before)


def test_snapshot_frame_detail(snap_compare):
    async def run_before(pilot):
        await start_recorded(pilot)
        await pilot.press("home", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, FrameDetailScreen), "the detail screen")
        await until(pilot, lambda: "VXLAN" in str(pilot.app.screen.query_one("#frame-layers-text").render()),
                    "scapy's layers")
    assert _snap(snap_compare, run_before)


def test_snapshot_flows_view(snap_compare):
    async def run_before(pilot):
        pane = await start_recorded(pilot)
        await pilot.press("F")
        await until(pilot, lambda: pane.flows_view.row_count > 0, "the flows")
    assert _snap(snap_compare, run_before)


def test_snapshot_filter_error(snap_compare):
    async def run_before(pilot):
        pane = await start_recorded(pilot)
        await pilot.press("slash")
        pane.query_one("#capture-filter", Input).cursor_blink = False
        await pilot.press(*"vni=256 proto=smtp", "enter")
        await pilot.pause()
    assert _snap(snap_compare, run_before)


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    """Nothing in the pane reads the local zone, but pin it anyway for the snapshots."""
    monkeypatch.setenv("TZ", "UTC")


async def test_enter_on_a_flow_filters_the_frames_to_it():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        await pilot.press("F")
        await until(pilot, lambda: pane.flows_view.row_count > 0, "the flows")
        await pilot.press("down", "enter")              # the second flow: demo's ICMP node1 -> node2
        await until(pilot, lambda: not pane.showing_flows, "the frame list")
        assert pane.filter.text == "vni=256 src=198.19.0.2 dst=198.19.0.3 proto=icmp"
        assert pane.frame_list.row_count == 50


async def test_following_survives_a_resize_and_narrow_terminals_drop_columns():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        await pilot.resize_terminal(120, 50)
        await pilot.pause()
        assert pane.frame_list.follow and visible_numbers(pane)[-1] == expected_counts()["frames"]
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        names = [c.name for c in pane.frame_list._cols]
        assert pane.frame_list.follow and "node" not in names and {"time", "outer", "vni", "inner"} <= set(names)
        assert visible_numbers(pane)[-1] == expected_counts()["frames"]


async def test_a_repaint_between_ticks_never_meets_a_dropped_frame():
    app = recorded_host()
    frames = fixture_frames()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(CapturePane)
        pane.state = "capturing"
        pane.apply_filter("proto=icmp")
        for _ in range(3):
            pane.absorb(FrameBatch(frames * 100))           # 35,700 frames a batch: the ring wraps
        pane.redraw()
        await pilot.pause()
        pane.absorb(FrameBatch(frames * 100))               # no tick yet: the list repaints as it is
        fl = pane.frame_list
        lines = [fl.render_line(y) for y in range(fl.scrollable_content_region.height)]
        assert all(line.cell_length == fl.scrollable_content_region.width for line in lines)
        assert all(pane.ring.start <= s for s in pane.index.seqs())


async def test_clearing_or_restarting_warns_about_unsaved_frames(tmp_path):
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("n")
        assert pane.ring.total == expected_counts()["frames"]
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, CaptureNodesModal), "the node chooser")
        assert "discards the 357 frames" in str(app.screen.query_one(".capture-nodes-error").render())
        await pilot.press("escape")
        pane._save(pane.ring.items(), str(tmp_path / "all.pcap"), everything=pane.ring.total)
        await until(pilot, lambda: "saved" in pane.note, "the save")
        await pilot.press("c")                        # all saved: no question
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal) and pane.ring.total == 0


async def test_detail_steps_through_the_frames_the_list_shows():
    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        pane.apply_filter("proto=arp")
        await pilot.press("home", "enter")
        await until(pilot, lambda: isinstance(app.screen, FrameDetailScreen), "the detail screen")
        arps = [i for i, f in enumerate(pane.ring.items()) if f.proto == "ARP"]
        assert app.screen.seq == arps[0]
        await pilot.press("n")
        await until(pilot, lambda: app.screen.seq == arps[1], "the next ARP frame")
        await until(pilot, lambda: "ARP" in str(app.screen.query_one("#frame-layers-text").render()), "its layers")
        await pilot.press("p", "p")
        await until(pilot, lambda: app.screen.seq == arps[0], "back to the first")


async def test_the_mouse_wheel_up_stops_following():
    from textual import events

    app = recorded_host()
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        fl = pane.frame_list
        bottom = fl.scroll_offset.y
        for _ in range(3):
            fl.post_message(events.MouseScrollUp(fl, 5, 5, 0, -1, 0, False, False, False))
        await until(pilot, lambda: fl.scroll_offset.y < bottom, "the scroll")
        assert not fl.follow
        await pilot.press("end")
        assert fl.follow and fl.scroll_offset.y == bottom
