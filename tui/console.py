"""What widgets may ask of the running console app, typed (widgets reach it as ``console(self)``).

``self.app`` is typed as a bare ``App`` by Textual; :func:`console` gives the same object as the
:class:`Console` protocol the :class:`tui.app.OverlayApp` implements, without importing the app (which
imports the widgets).
"""
from __future__ import annotations

from typing import Protocol, cast

from textual.dom import DOMNode

from core.service import Service


class Console(Protocol):
    """The console app as its widgets see it."""

    service: Service
    refresh_timers: bool

    def writable(self, action: str) -> bool: ...
    def refresh_panes(self, *pane_ids: str) -> None: ...


def console(node: DOMNode) -> Console:
    """The running :class:`tui.app.OverlayApp` of ``node``."""
    return cast(Console, node.app)
