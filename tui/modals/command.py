"""Run a command on one node and see its output, exit status and duration."""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, RichLog, Static

from core.model import CommandResult
from tui.console import console
from tui.panes.base import describe_error


class CommandDone(Message):
    """A command finished (``result``) or could not run (``error``)."""

    def __init__(self, command: str, result: CommandResult | None, error: str | None = None) -> None:
        super().__init__()
        self.command = command  #: what was run
        self.result = result    #: its output, None when it failed to run
        self.error = error      #: why it could not run


class CommandModal(ModalScreen[None]):
    """An input line and the output of every command run from it on ``node``."""

    BINDINGS = [Binding("escape", "close", "Close", id="command.close")]

    def __init__(self, node: str) -> None:
        super().__init__(classes="modal")
        self.node = node  #: where commands run

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="command-dialog"):
            yield Static(f"[b]Run a command on {escape(self.node)}[/b]  (runs as the inventory's SSH user; Esc closes)",
                         classes="dialog-title")
            yield Input(placeholder="e.g. docker network ls", id="command")
            yield RichLog(id="output", wrap=False, markup=False, highlight=False)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        command = event.value.strip()
        if not command:
            return
        self.query_one(RichLog).write(Text(f"{self.node}$ {command}", style="bold cyan"))
        event.input.value = ""
        self.run(command)

    @work(group="command", exit_on_error=False)
    async def run(self, command: str) -> None:
        try:
            result = await console(self).service.run_command(self.node, command)
        except Exception as e:  # noqa: BLE001 - shown in the output
            self.post_message(CommandDone(command, None, describe_error(e)))
            return
        self.post_message(CommandDone(command, result))

    def on_command_done(self, msg: CommandDone) -> None:
        out = self.query_one(RichLog)
        if msg.result is None:
            out.write(Text(f"✗ {msg.error}", style="bold red"))
            return
        r = msg.result
        for line in r.stdout.rstrip("\n").splitlines():
            out.write(Text(line))
        for line in r.stderr.rstrip("\n").splitlines():
            out.write(Text(line, style="red"))
        style = "green" if r.ok else "bold red"
        out.write(Text(f"[exit {r.exit_status} · {r.duration * 1000:.0f} ms]", style=style))

    def action_close(self) -> None:
        self.dismiss(None)
