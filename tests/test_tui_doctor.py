"""The Doctor screen (`!`), the header's line when a check fails, and the runbook's pre-apply check,
on the recorded lab state (whose doctor report was recorded with docker-node3's MTU lowered to 1400)."""
from __future__ import annotations

from textual.widgets import RichLog, Static, Tree
from tui_fixtures import SIZE, press, recorded_app, settle

from tui.commands import key_table
from tui.messages import DoctorRan
from tui.modals.confirm import ConfirmModal
from tui.screens.doctor import DoctorScreen
from tui.screens.runbook import RunbookScreen


def _label(node) -> str:
    return str(node.label)


async def test_doctor_screen_lists_problems_first_open_with_evidence_and_fix():
    messages = []
    app = recorded_app()
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await settle(pilot)
        header = app.query_one("#doctor-line", Static)
        assert not header.has_class("-shown")              # nothing run yet: no line
        await press(pilot, "exclamation_mark")
        screen = app.screen
        assert isinstance(screen, DoctorScreen) and screen.report is not None
        tree = screen.query_one(Tree)
        first = tree.root.children[0]
        assert first.data.id == "mtu.underlay" and first.data.status == "fail" and first.is_expanded
        assert "docker-node3" in _label(first)
        leaves = [_label(c) for c in first.children]
        assert any("mtu 1400" in x for x in leaves) and any(x.startswith("fix") and "1500" in x for x in leaves)
        ok_rows = [n for n in tree.root.children if n.data.status == "ok"]
        assert ok_rows and not any(n.is_expanded for n in ok_rows)
        summary = str(screen.query_one("#doctor-summary", Static).render())
        assert "2 check(s) fail" in summary and "mtu.path" in summary
        # the header names what fails, also after closing the screen
        assert header.has_class("-shown") and "mtu.underlay, mtu.path fail" in str(header.render())
        # r runs it again
        def runs() -> int:       # the hook sees a message at each node it reaches: count distinct ones
            return len({id(m) for m in messages if isinstance(m, DoctorRan)})
        assert runs() == 1
        await press(pilot, "r")
        assert runs() == 2
        warn = next(n for n in tree.root.children if n.data.status == "warn")
        assert not warn.is_expanded
        await press(pilot, "e")
        assert warn.is_expanded
        await press(pilot, "escape")
        assert not isinstance(app.screen, DoctorScreen) and header.has_class("-shown")


async def test_doctor_is_in_the_binding_table_and_palette():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = {r.binding_id: r for r in key_table(app)}
        assert rows["app.doctor"].key == "!" and rows["app.doctor"].target is None
        assert "doctor.rerun" in rows


async def test_runbook_apply_first_shows_what_would_block_it():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "b")
        screen = app.screen
        assert isinstance(screen, RunbookScreen)
        await press(pilot, "a")
        assert isinstance(app.screen, ConfirmModal)
        assert "would block" in app.screen.question and "✗ mtu.underlay \\[docker-node3]" in app.screen.question  # markup-escaped
        log = "\n".join(str(s.text) for s in screen.query_one("#runbook-log", RichLog).lines)
        assert "✗ would block: mtu.underlay [docker-node3]" in log and "fix: " in log
        await press(pilot, "n")
        assert app.screen is screen and not screen.applying
