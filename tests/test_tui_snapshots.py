"""Snapshots (pytest-textual-snapshot) of every pane, modal and screen of the console on recorded state.

The scenes are :data:`scenes.SCENES` (the same ones `make screenshots` draws). Update after
a deliberate change with `pytest tests/test_tui_snapshots.py --snapshot-update`, then look at the SVGs.
"""
from __future__ import annotations

import pytest
from scenes import SCENES, play, scene_app


@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_scene(snap_compare, scene):
    async def run_before(pilot) -> None:
        await play(pilot, scene)

    assert snap_compare(scene_app(scene), terminal_size=scene.size, run_before=run_before)
