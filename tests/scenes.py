"""`python tests/scenes.py DIR` (`make screenshots`): SVGs of the console on recorded lab state.

One scene per screen: the main screen (120x36 and 80x24), each pane maximised, every modal, the
runbook and the help screen. The snapshot tests replay the same scenes, so the README's pictures
and the tested screens are one and the same.
"""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab_state.json"


@dataclass(frozen=True)
class Scene:
    """Keys pressed (``type:TEXT`` types text, ``key:PREFIX`` selects a key in the key browser) at a size."""

    name: str
    steps: tuple[str, ...] = ()
    size: tuple[int, int] = (120, 36)
    read_only: bool = False


SCENES: tuple[Scene, ...] = (
    Scene("main"),
    Scene("main_capturing", ("4", "s", "ctrl+s", "1")),
    Scene("main_80x24", size=(80, 24)),
    Scene("main_read_only", read_only=True),
    Scene("nodes_maximised", ("1", "m")),
    Scene("etcd_maximised", ("2", "m")),
    Scene("networks_maximised", ("3", "a", "m")),
    Scene("capture_maximised", ("4", "m")),
    Scene("create_network_error", ("3", "c", "type:bad name", "tab", "type:198.19.0.5/24", "enter")),
    Scene("delete_confirm", ("3", "down", "D")),
    Scene("ping_matrix", ("3", "p")),
    Scene("network_detail", ("3", "enter")),
    Scene("node_detail", ("1", "down", "enter")),
    Scene("etcd_member_detail", ("2", "enter")),
    Scene("key_browser", ("2", "k", "key:/docker/network/v1.0/overlay/network/e1e5d5f913f2")),
    Scene("command_output", ("1", "x", "type:docker network ls", "enter")),
    Scene("log_follow", ("1", "e")),
    Scene("runbook", ("b",)),
    Scene("runbook_applied", ("b", "a", "y", "down", "down")),
    Scene("help", ("question_mark",)),
    Scene("doctor", ("exclamation_mark",)),
    Scene("links_grid", ("4", "l")),
    Scene("node_remove_confirm", ("1", "down", "down", "D")),
)


#: seconds a notification stays in a test (a toast's own 5-8 s timeout is a clock a loaded machine loses to)
TOAST_HOLD = 3600.0


def _cursor_stays(self) -> None:
    self._cursor_visible = True


def steady(app):
    """Take the clocks out of what the test sees: Inputs' cursors never blink off (the blink is a
    0.5 s timer: a snapshot taken later than that after the last key, on a loaded machine, caught the
    cursor hidden; command_output flaked so), notifications stay until the test ends (a pilot test
    reading them after the toast's timeout failed so), and the theme is fixed."""
    from textual.widgets import Input

    Input._toggle_cursor = _cursor_stays
    app.theme = "textual-dark"       # whatever $TEXTUAL_THEME says
    notify = app.notify

    def held(message, *, timeout=None, **kw):
        return notify(message, timeout=TOAST_HOLD, **kw)

    app.notify = held
    return app


def scene_app(scene: Scene, state: Path = DEFAULT_STATE):
    """The console on recorded state, deterministic: no timers or watch (refresh_timers off), see :func:`steady`."""
    from core.recorded.service import RecordedService
    from tui.app import OverlayApp

    return steady(OverlayApp(RecordedService.load(state, read_only=scene.read_only), refresh_timers=False))


async def settle(pilot) -> None:
    """Wait until no worker runs and every message they posted has been handled."""
    app = pilot.app
    for _ in range(50):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in app.workers):
            return
    raise RuntimeError("workers kept running: " + ", ".join(w.name for w in app.workers if w.is_running))


async def _select_key(pilot, prefix: str) -> None:
    from textual.widgets import Tree

    tree = pilot.app.screen.query_one(Tree)
    node = next(n for n in tree._tree_nodes.values() if n.data is not None and n.data.key.startswith(prefix))
    up = node
    while up is not None:
        up.expand()
        up = up.parent
    await settle(pilot)
    tree.move_cursor(node)


async def play(pilot, scene: Scene) -> None:
    """Drive the app through a scene's steps, settling after each."""
    await settle(pilot)
    for step in scene.steps:
        if step.startswith("type:"):
            for ch in step[5:]:
                await pilot.press("space" if ch == " " else ch)
        elif step.startswith("key:"):
            await _select_key(pilot, step[4:])
        else:
            await pilot.press(step)
        await settle(pilot)


async def _shoot(scene: Scene, out: Path, state: Path) -> None:
    app = scene_app(scene, state)
    async with app.run_test(size=scene.size) as pilot:
        await play(pilot, scene)
        out.write_text(app.export_screenshot(title=f"overlay-tui: {scene.name.replace('_', ' ')}"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python tests/scenes.py DIR [STATE.json]", file=sys.stderr)
        return 2
    out_dir = Path(args[0])
    state = Path(args[1]) if len(args) > 1 else DEFAULT_STATE
    out_dir.mkdir(parents=True, exist_ok=True)
    for scene in SCENES:
        path = out_dir / f"{scene.name}.svg"
        asyncio.run(_shoot(scene, path, state))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
