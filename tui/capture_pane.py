"""The capture pane: choose nodes, start/pause/stop a live VXLAN capture, and browse the frames.

Work in progress: this first version only shows the pane's frame; the live list, filter, flows,
detail and save are added in the following commits.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static


class CapturePane(Widget):
    """Live capture of the underlay's VXLAN frames; reads ``self.app.service`` (a core.service.Service)."""

    DEFAULT_CSS = """
    CapturePane { height: 1fr; border: round $accent; }
    """

    def compose(self) -> ComposeResult:
        yield Static("capture: idle", id="capture-status")
