"""Hostile strings from nodes, etcd and pcaps in every pane, screen and modal of the console (issue 10, item 4).

The recorded lab state gets terminal escapes (OSC 0 title, OSC 52 clipboard write, ESC [ 2 J), Textual markup
(``[/x]`` used to crash the console, ``a[b]c`` showed as ``ac``, a member error lost ``[http://…]``) and a
10,000-character string in host names, log lines, command output, etcd keys and values, network and container
names, runbook details and ping errors. The console must keep running, never draw a raw ESC or BEL, and show the
markup literally.
"""
from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

from textual.widgets import DataTable, Input, Tree
from tui_fixtures import SIZE, press, settle, steady

from core.recorded.service import RecordedService
from core.text import clean, scrub
from tui.app import OverlayApp

STATE = Path(__file__).parent / "fixtures" / "lab_state.json"
OSC_TITLE = "\x1b]0;pwned\x07"
OSC_CLIP = "\x1b]52;c;cm0gLXJmIH4K\x07"
CLEAR = "\x1b[2J"
CRASH = "[/x]"
LIT = "a[b]c"
URL = "[http://198.18.0.2:2379]"
BIG = "Z" * 10_000


def hostile_state() -> dict:
    s = json.loads(STATE.read_text())
    n1, n2, n3 = s["nodes"][:3]
    n1["hostname"] = f"{OSC_TITLE}host-{LIT}"
    n1["kernel"] = CLEAR + CRASH
    n2["docker_version"] = BIG
    n3["error"] = f"{OSC_CLIP}[/bold]boom {LIT}"
    n3["reachable"] = False
    members = s["etcd"]["members"]
    members[1]["error"] = f"dial {URL} refused {CRASH}"
    members[1]["healthy"] = False
    members[0]["version"] = OSC_TITLE + CRASH
    s["keys"]["v2"] += [
        {"key": f"/docker/{CRASH}", "value": OSC_TITLE + LIT, "is_dir": False, "source": "v2"},
        {"key": f"/docker/{LIT}", "value": CLEAR + BIG, "is_dir": False, "source": "v2"},
    ]
    evil = copy.deepcopy(s["networks"][0])
    evil.update(id="f" * 64, name=LIT, vni=999, subnet="198.19.99.0/24")
    for c in evil["containers"]:
        c["name"] = f"{CRASH}{OSC_CLIP}{c['name']}"
        c["network"] = LIT
    s["networks"].append(evil)
    s["logs"]["docker-node2/dockerd"] += [OSC_TITLE, OSC_CLIP + "clip", CLEAR, CRASH, LIT, BIG]
    cmd = "docker-node1/docker network ls"
    s["commands"][cmd]["stdout"] += f"{OSC_TITLE}\n{CRASH}\n{LIT}\n{BIG}\n"
    s["runbook"]["plan"][0]["detail"] = f"{CRASH} {LIT} {CLEAR}"
    s["ping_matrix"][0]["error"] = f"{CRASH} {LIT} {OSC_TITLE}"
    s["ping_matrix"][0]["received"] = 0
    s["doctor"] = {"seconds": 1.0, "checks": [
        {"id": "ports.udp4789", "status": "fail", "nodes": ["docker-node1"], "summary": f"{CRASH} {LIT} {OSC_TITLE}",
         "evidence": [f"docker-node1: `x` -> {CLEAR}{LIT}"], "fix": f"{CRASH} fix {OSC_CLIP}"}]}
    first_ip = s["networks"][0]["containers"][0]["ip"]
    s["names"]["containers"][first_ip] = f"{LIT}{CRASH}{OSC_TITLE}"
    return s


def hostile_app() -> OverlayApp:
    return steady(OverlayApp(RecordedService(hostile_state(), state_path=STATE), refresh_timers=False))


def drawn(app) -> str:
    svg = app.export_screenshot()
    assert "\x1b" not in svg and "\x07" not in svg and "\x9b" not in svg, "a raw control character was drawn"
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def check(pilot, app, *shown: str) -> str:
    await settle(pilot)
    assert app.is_running and app.return_code is None
    text = drawn(app)
    for s in shown:
        assert s in text, f"{s!r} not drawn on {type(app.screen).__name__}"
    return text


def test_clean_escapes_every_terminal_control_and_scrub_reaches_nested_results():
    assert clean(OSC_TITLE) == "\\x1b]0;pwned\\x07" and clean("a\tb\nc") == "a\tb\nc"
    assert clean("\x9b31m\u202eevil") == "\\x9b31m\\u202eevil" and clean(LIT) == LIT
    state = scrub(hostile_state())
    assert "\x1b" not in json.dumps(state, ensure_ascii=False)


async def test_every_pane_screen_and_modal_survives_hostile_strings():
    app = hostile_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await check(pilot, app, "[/bold]boom", LIT)                            # nodes, etcd, networks panes
        await press(pilot, "1", "enter")                                       # node detail (docker-node1)
        await check(pilot, app, f"host-{LIT}", CRASH)
        await press(pilot, "escape", "2", "down", "enter")                     # member detail: the error whole
        await check(pilot, app, URL)
        await press(pilot, "escape", "2", "k")                                 # key browser
        screen = app.screen
        tree = screen.query_one(Tree)
        for key in (f"/docker/{CRASH}", f"/docker/{LIT}"):
            node = next(n for n in tree._tree_nodes.values() if n.data is not None and n.data.key == key)
            parent = node.parent
            while parent is not None:
                parent.expand()
                parent = parent.parent
            await settle(pilot)
            tree.move_cursor(node)
            await settle(pilot)
            assert screen.shown is node.data
            await check(pilot, app, key)
        await press(pilot, "escape", "1", "down", "d")                         # log screen (docker-node2 dockerd)
        await check(pilot, app)
        assert type(app.screen).__name__ == "LogScreen"
        await press(pilot, "escape", "1", "home", "x")                         # command output
        for ch in "docker network ls":
            await pilot.press("space" if ch == " " else ch)
        await press(pilot, "enter")
        await check(pilot, app, "[exit 0")
        await press(pilot, "escape", "3")
        table = app.screen.query_one("#networks-table", DataTable)
        row = next(i for i in range(table.row_count) if str(table.get_row_at(i)[0]) == LIT)
        table.move_cursor(row=row)
        await press(pilot, "enter")                                            # network detail
        await check(pilot, app, LIT, CRASH)
        await press(pilot, "escape", "p")                                      # ping grid
        await check(pilot, app)
        await press(pilot, "escape", "b")                                      # runbook
        await check(pilot, app, f"{CRASH} {LIT}")
        await press(pilot, "escape", "question_mark")                          # help
        await check(pilot, app, "keys")
        await press(pilot, "escape", "3", "c")                                 # network form: markup in input
        form = app.screen
        form.query_one("#name", Input).value = "[/bold]abc"
        form.query_one("#subnet", Input).value = f"{CRASH}{LIT}"
        await press(pilot, "enter")
        await check(pilot, app, "[/bold]abc", LIT)
        await press(pilot, "escape", "exclamation_mark")                       # doctor report
        await check(pilot, app, f"{CRASH} {LIT}")
        assert type(app.screen).__name__ == "DoctorScreen"
        await press(pilot, "escape", "4")                                      # capture list + frame detail
        await press(pilot, "s")
        await press(pilot, "ctrl+s")
        for _ in range(300):
            if app.query_one("CapturePane").state == "ended":
                break
            await pilot.pause(0.01)
        await check(pilot, app, LIT)
        await press(pilot, "home", "enter")
        await check(pilot, app)
        assert type(app.screen).__name__ == "FrameDetailScreen"
        await press(pilot, "escape")
        await check(pilot, app)
    assert app.return_code in (None, 0)


async def test_the_live_facade_cleans_what_leaves_core_and_closes_the_streams_it_wraps():
    from core.errors import SSHError
    from core.live import LiveService
    from core.model import CommandResult, Inventory, LogLines, NodeSpec
    from core.text import scrubbed

    svc = LiveService(Inventory("x.toml", [NodeSpec("n1", "198.18.0.1")]))

    async def run_command(node, command):
        return CommandResult(node, command, 0, OSC_TITLE + LIT, CLEAR, 0.1)

    closed = []

    async def follow_log(node, source):
        try:
            yield LogLines(node, source, [OSC_CLIP, LIT])
            yield LogLines(node, source, ["never read"])
        finally:
            closed.append(True)

    svc.node_part.run_command = run_command            # type: ignore[method-assign]
    svc.node_part.follow_log = follow_log              # type: ignore[method-assign]
    res = await svc.run_command("n1", "x")
    assert res.stdout == "\\x1b]0;pwned\\x07" + LIT and res.stderr == "\\x1b[2J"
    stream = svc.follow_log("n1", "etcd")
    first = await anext(stream)
    assert first.lines == ["\\x1b]52;c;cm0gLXJmIH4K\\x07", LIT]
    await stream.aclose()
    assert closed == [True]
    assert "\x1b" not in str(SSHError("n1", "boom " + OSC_TITLE))
    await svc.close()
    assert scrubbed   # the wrapper the façade uses for every stream
