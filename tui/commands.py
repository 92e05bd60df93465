"""The binding table, and the command palette provider generated from it (dolphie's idea).

Every key of the console is a :class:`textual.binding.Binding` with an id (posting's idea), so a
keymap file can move it; this module lists them per scope for the help screen (`?`) and offers
each one in the command palette.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import cast

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.console import Console

#: binding ids of the actions that change something; read-only consoles refuse them
MUTATING = {"nodes.run-command", "networks.create", "networks.delete", "runbook.apply", "nodes.remove"}


@dataclass(frozen=True)
class KeyAction:
    """One row of the binding table."""

    scope: str                 # where the key works: "Everywhere", "Nodes", "Runbook", ...
    key: str                   # as the footer shows it
    description: str
    action: str
    binding_id: str | None
    target: str | None         # id of the main-screen pane the action runs on; None: the app
    mutating: bool


def _scopes(app_class: type) -> list[tuple[str, type, str | None]]:
    """(scope, class whose own BINDINGS apply, pane id) in the order the help screen shows them.

    The app's class is passed in (not imported): the app imports this module for its palette."""
    from tui.capture.pane import CapturePane
    from tui.modals.confirm import ConfirmModal
    from tui.panes.base import Pane
    from tui.panes.etcd import EtcdPane
    from tui.panes.networks import NetworksPane
    from tui.panes.nodes import NodesPane
    from tui.screens.doctor import DoctorScreen
    from tui.screens.key_browser import KeyBrowserScreen
    from tui.screens.links import LinksScreen
    from tui.screens.log import LogScreen
    from tui.screens.node_removal import NodeRemovalScreen
    from tui.screens.ping_grid import PingGridScreen
    from tui.screens.runbook import RunbookScreen
    from tui.screens.trace import TraceScreen

    scopes: list[tuple[str, type, str | None]] = [
        ("Everywhere", app_class, None), ("Any table pane", Pane, "*"), ("Nodes", NodesPane, "nodes"),
        ("etcd", EtcdPane, "etcd"), ("Networks", NetworksPane, "networks"), ("Capture", CapturePane, "capture")]
    scopes += [("Runbook", RunbookScreen, "runbook"), ("Key browser", KeyBrowserScreen, "keys"),
               ("Ping matrix", PingGridScreen, "ping"), ("Log", LogScreen, "log"),
               ("Confirm (before anything destructive)", ConfirmModal, "confirm"), ("Doctor", DoctorScreen, "doctor"),
               ("Links", LinksScreen, "links"), ("Trace", TraceScreen, "trace")]
    scopes += [("Node removal", NodeRemovalScreen, "node-removal")]
    return scopes


def _keys(app, binding: Binding) -> str:
    keymap = getattr(app, "_keymap", {}) or {}
    keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
    return ", ".join(app.get_key_display(Binding(k.strip(), binding.action)) for k in keys.split(","))


def key_table(app) -> list[KeyAction]:
    """Every binding of the console, with its current key (after the keymap), per scope."""
    rows = []
    for scope, cls, target in _scopes(type(app)):
        for b in cls.__dict__.get("BINDINGS", []):
            if isinstance(b, Binding) and b.description:
                rows.append(KeyAction(scope, _keys(app, b), b.description, b.action, b.id, target,
                                      b.id in MUTATING))
    return rows


def _palette_rows(app) -> list[KeyAction]:
    """The rows that make sense from the main screen (modal screens have their own keys)."""
    main_ids = {"nodes", "etcd", "networks", "capture", "*"}
    return [r for r in key_table(app) if (r.target is None or r.target in main_ids)
            and r.action not in ("command_palette", "clear_filter")]


async def run_key_action(app, row: KeyAction) -> None:
    """Run a row's action where its key would: on the app or on its pane (focusing it first)."""
    if row.target is None:
        await app.run_action(row.action)
        return
    target = row.target if row.target != "*" else (app.focused_pane_id() or "nodes")
    pane = app.main_pane(target)
    if pane is None:
        app.notify(f"{row.scope} is not on this screen", severity="warning")
        return
    app.action_focus_pane(target)
    await app.run_action(row.action, pane)


class BindingCommands(Provider):
    """Offers every action of the binding table in the command palette, with its key as help."""

    def _text(self, row: KeyAction) -> str:
        return f"{row.scope}: {row.description}" + (" (read-only: unavailable)" if row.mutating and
                                                      cast("Console", self.app).service.read_only else "")

    async def discover(self) -> Hits:
        for row in _palette_rows(self.app):
            yield DiscoveryHit(self._text(row), partial(run_key_action, self.app, row), help=f"key: {row.key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for row in _palette_rows(self.app):
            text = self._text(row)
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(run_key_action, self.app, row), help=f"key: {row.key}")
