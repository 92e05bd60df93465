"""What the UI tests see does not depend on how long they take: the clocks that change a screen on
their own (the Input cursor's 0.5 s blink, a notification's timeout) are out of the test apps.
The snapshot command_output flaked on a loaded machine: the blink timer fired before the screenshot."""
from __future__ import annotations

from scenes import SCENES, TOAST_HOLD, play, scene_app
from textual.widgets import Input


async def test_a_cursor_blink_does_not_change_a_scene():
    scene = next(s for s in SCENES if s.name == "command_output")
    app = scene_app(scene)
    async with app.run_test(size=scene.size) as pilot:
        await play(pilot, scene)
        before = app.export_screenshot()
        box = app.screen.query_one(Input)
        for _ in range(3):                 # what the blink timer does every 0.5 s
            box._toggle_cursor()
            await pilot.pause()
            assert app.export_screenshot() == before


async def test_notifications_stay_until_the_test_reads_them():
    scene = next(s for s in SCENES if s.name == "main")
    app = scene_app(scene)
    async with app.run_test(size=scene.size) as pilot:
        await play(pilot, scene)
        app.notify("hello", timeout=1)
        await pilot.pause()
        assert [n.timeout for n in app._notifications if n.message == "hello"] == [TOAST_HOLD]
