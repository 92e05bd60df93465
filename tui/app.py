"""The console: nodes, etcd members, networks and capture on one screen, over a :class:`core.service.Service`.

Every service call runs in a worker that posts a message; handlers here and on the panes change
the widgets. ``run_app`` is what ``overlay-tui`` (no subcommand) runs.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
import tomllib
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from core.service import Service
from tui.capture.pane import CapturePane
from tui.commands import BindingCommands
from tui.header_bar import HeaderBar
from tui.messages import ClusterChanged, DoctorRan, FirstPaint, Notice, PaneFilled
from tui.panes.base import describe_error
from tui.panes.etcd import EtcdPane
from tui.panes.networks import NetworksPane
from tui.panes.nodes import NodesPane

PANES = ("nodes", "etcd", "networks", "capture")
#: the panes that must have shown data once for the first full paint (capture starts on demand)
DATA_PANES = frozenset({"nodes", "etcd", "networks"})


class OverlayApp(App[int]):
    """The operator console.

    ``refresh_timers=False`` switches off the periodic refreshes, redraw timers, live rates, the doctor's
    run after the first paint and (unless ``watch`` says otherwise) the etcd watch: the screens then
    change only on keys and on what the workers they start post. ``exit_signals`` end the app cleanly (the service is closed on unmount).
    """

    CSS_PATH = "app.tcss"
    TITLE = "overlay-tui"
    COMMANDS = App.COMMANDS | {BindingCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Keys", id="app.help"),
        Binding("m", "toggle_maximize", "Max/restore", id="app.maximize"),
        Binding("b", "runbook", "Runbook", id="app.runbook"),
        Binding("1", "focus_pane('nodes')", "Focus nodes", show=False, id="app.focus-nodes"),
        Binding("2", "focus_pane('etcd')", "Focus etcd", show=False, id="app.focus-etcd"),
        Binding("3", "focus_pane('networks')", "Focus networks", show=False, id="app.focus-networks"),
        Binding("4", "focus_pane('capture')", "Focus capture", show=False, id="app.focus-capture"),
        Binding("ctrl+p", "command_palette", "Palette", show=False, id="app.palette"),
        Binding("exclamation_mark", "doctor", "Doctor (what breaks the overlay)", show=False, id="app.doctor"),
    ]

    def __init__(self, service: Service, *, refresh_timers: bool = True, watch: bool | None = None,
                 keymap: dict[str, str] | None = None, exit_signals: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.service = service            #: the engine; panes read it as ``self.app.service``
        self.refresh_timers = refresh_timers  #: periodic refreshes, redraw timers and live rates
        self.use_watch = refresh_timers if watch is None else watch
        self._exit_signals = exit_signals
        self.created_at = time.monotonic()
        self.first_paint_seconds: float | None = None  #: app creation to every data pane filled once
        self._filled: set[str] = set()
        self._dirty: set[str] = set()
        self._keymap_overrides = keymap or {}

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header-bar")
        with Vertical(id="main"):
            yield NodesPane(id="nodes")
            with Horizontal(id="middle"):
                yield EtcdPane(id="etcd")
                yield NetworksPane(id="networks")
            yield CapturePane(id="capture")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self._keymap_overrides:
            self.set_keymap(self._keymap_overrides)
        self.action_focus_pane("nodes")
        if self.use_watch:
            self.watch_cluster()
        if self.refresh_timers:
            self.set_interval(1.0, self._refresh_dirty)
        loop = asyncio.get_running_loop()
        for sig in self._exit_signals:       # SIGHUP/SIGTERM: leave through on_unmount, which closes the service
            loop.add_signal_handler(sig, self.exit)
        if self.service.read_only:
            self.notify("read-only console: creating or deleting networks, applying the runbook and running "
                        "commands are unavailable", title="read-only", timeout=6)

    async def on_unmount(self) -> None:
        try:
            await self.service.close()
        except Exception as e:  # noqa: BLE001 - on the way out: log it (with its traceback), don't crash the exit
            describe_error(e)

    # --- panes -----------------------------------------------------------------------------------
    def main_pane(self, pane_id: str) -> Widget | None:
        """A pane of the main screen by id (works while a modal is on top)."""
        try:
            return self.screen_stack[0].query_one(f"#{pane_id}")
        except NoMatches:
            return None

    def focused_pane_id(self) -> str | None:
        node: DOMNode | None = self.focused
        while node is not None:
            if node.id in PANES:
                return node.id
            node = node.parent
        return None

    def action_focus_pane(self, pane_id: str) -> None:
        pane = self.main_pane(pane_id)
        if pane is None:
            return
        target = next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            target.focus()

    def action_toggle_maximize(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
            return
        pane = self.main_pane(self.focused_pane_id() or "nodes")
        if pane is not None and screen is self.screen_stack[0]:
            screen.maximized = pane

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def action_runbook(self) -> None:
        from tui.screens.runbook import RunbookScreen

        self.push_screen(RunbookScreen())

    def action_doctor(self) -> None:
        from tui.screens.doctor import DoctorScreen

        self.push_screen(DoctorScreen())

    @work(group="doctor-first", exit_on_error=False)
    async def first_doctor(self) -> None:
        """One doctor run once the console has painted (live nodes): the header names what fails."""
        try:
            self.post_message(DoctorRan(await self.service.doctor()))
        except Exception:  # noqa: BLE001 - the Doctor screen (!) shows the error when asked
            pass

    def on_doctor_ran(self, msg: DoctorRan) -> None:
        failing = [c.id for c in msg.report.checks if c.status == "fail"]
        try:
            self.screen_stack[0].query_one(HeaderBar).show_doctor(failing)
        except Exception:  # noqa: BLE001 - no header on this screen stack (shutting down)
            pass

    def writable(self, action: str) -> bool:
        """False (and says so) when the console is read-only."""
        if self.service.read_only:
            self.notify(f"{action} is not available: this console is read-only", title="read-only",
                        severity="warning")
            return False
        return True

    def refresh_panes(self, *pane_ids: str) -> None:
        """Ask panes (all data panes by default) to fetch again."""
        for pane_id in pane_ids or tuple(DATA_PANES):
            pane = self.main_pane(pane_id)
            if pane is not None and hasattr(pane, "fetch"):
                pane.fetch()

    # --- messages from workers -----------------------------------------------------------------
    def on_notice(self, msg: Notice) -> None:
        self.notify(msg.text, title=msg.title, severity=msg.severity, markup=False)

    def on_pane_filled(self, msg: PaneFilled) -> None:
        self._filled.add(msg.pane_id)
        if self.first_paint_seconds is None and self._filled >= DATA_PANES:
            self.first_paint_seconds = time.monotonic() - self.created_at
            self.post_message(FirstPaint(self.first_paint_seconds))
            # After the first paint (it must not slow the panes down); never on its own in a read-only
            # console: the port test briefly adds a counting nft table on the nodes.
            if self.refresh_timers and not self.service.read_only:
                self.first_doctor()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The catch-all: a worker that failed anyway becomes a notification, never a crash."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.notify(describe_error(event.worker.error), title=event.worker.name or "error", severity="error",
                        markup=False)
            # (describe_error has written it and its traceback to the log file)

    # --- the watch: changes mark panes dirty; a 1 s timer refreshes them -----------------------
    @work(group="watch", exclusive=True, exit_on_error=False)
    async def watch_cluster(self) -> None:
        try:
            async for event in self.service.watch():
                self.post_message(ClusterChanged(event))
        except Exception as e:  # noqa: BLE001 - the periodic refresh still runs
            self.post_message(Notice(f"watching the cluster stopped: {describe_error(e)}; panes still refresh "
                                     "on their timers", "warning", "etcd watch"))

    def on_cluster_changed(self, msg: ClusterChanged) -> None:
        ev = msg.event
        self._dirty.add("etcd")
        if ev.kind == "network" or "/network" in ev.key:
            self._dirty.add("networks")
        if not self.refresh_timers:
            self._refresh_dirty()

    def _refresh_dirty(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            self.refresh_panes(*sorted(dirty))


def load_keymap(path: str | None = None) -> dict[str, str]:
    """Key overrides by binding id from ``$OVERLAY_TUI_KEYMAP`` or ~/.config/overlay-tui/keymap.toml
    (``[keymap]`` table, e.g. ``"networks.create" = "n"``); missing file: no overrides."""
    p = Path(path or os.environ.get("OVERLAY_TUI_KEYMAP") or
             Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "overlay-tui" / "keymap.toml")
    if not p.is_file():
        return {}
    from core.errors import UsageError

    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{p}: cannot read the keymap: {e}") from e
    keymap = data.get("keymap", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in keymap.items()):
        raise UsageError(f"{p}: [keymap] maps binding ids to keys, both strings (see `?` in the console)")
    return keymap


def run_app(inventory: str | None = None, read_only: bool = False, replay_state: str | None = None,
            served_session: str | None = None) -> int:
    """Open the console on the live nodes (or on recorded state); returns the exit status.

    ``served_session``: the `serve` session this console runs in (its files stay in that session's directory)."""
    service: Service
    if replay_state:
        from core.recorded.service import RecordedService

        service = RecordedService.load(replay_state, read_only=read_only, served_session=served_session)
    else:
        from core.live import LiveService  # loads the SDKs: only when the console really opens

        service = LiveService.open(inventory, read_only=read_only, served_session=served_session)
    app = OverlayApp(service, keymap=load_keymap(), exit_signals=(signal.SIGHUP, signal.SIGTERM))
    app.run()
    return app.return_code or 0
