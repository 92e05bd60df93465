"""The runbook: the tutorial's eight steps with their state; apply with progress per step and node;
each step's detail and the exact commands it runs. Before applying, the doctor's checks of what the
runbook cannot fix itself run, and the confirmation names what would block it."""
from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, RichLog, Static

from core.doctor.ids import RUNBOOK_CHECKS
from core.model import DoctorReport, RunbookEvent, StepState
from tui.console import console
from tui.panes.base import describe_error


class PlanLoaded(Message):
    """The plan arrived (``steps``) or failed (``error``)."""

    def __init__(self, steps: list[StepState] | None, error: str | None = None) -> None:
        super().__init__()
        self.steps = steps  #: the steps with their commands
        self.error = error  #: why the plan could not be made


class RunbookProgress(Message):
    """One event of an apply."""

    def __init__(self, event: RunbookEvent) -> None:
        super().__init__()
        self.event = event  #: the step (and node) that changed


class RunbookFinished(Message):
    """An apply ended; ``error`` when it stopped on an exception rather than a failed step."""

    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error  #: why it stopped


class PrecheckDone(Message):
    """The doctor's pre-apply checks ended (``report``), or could not run (``error``)."""

    def __init__(self, report: DoctorReport | None, error: str | None = None) -> None:
        super().__init__()
        self.report = report  #: the checks of :data:`core.doctor.ids.RUNBOOK_CHECKS`
        self.error = error    #: why the doctor could not run


STATE_WIDTH = 9     # "… running", "○ not run"


def state_text(step: StepState) -> Text:
    if step.running:
        return Text("… running", style="bold cyan")
    if step.ok is True:
        return Text("✓ ok", style="bold green")
    if step.ok is False:
        return Text("✗ failed", style="bold red")
    return Text("○ not run" if not step.detail else "– n/a", style="dim")


class RunbookScreen(ModalScreen[None]):
    """Plan on open; `a` asks, then applies; highlighting a step shows its detail and commands."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="runbook.close"),
                Binding("a", "apply", "Apply", id="runbook.apply"),
                Binding("r", "reload", "Reload plan", id="runbook.reload")]

    def __init__(self) -> None:
        super().__init__(classes="modal")
        self.steps: list[StepState] = []  #: the plan, updated by apply events
        self.applying = False             #: an apply is running

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="runbook-dialog"):
            yield Static("[b]Runbook[/b]: the classic overlay tutorial, verified step by step", classes="dialog-title")
            with Horizontal(id="runbook-top"):
                yield DataTable(id="steps", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="step-detail-box"):
                    yield Static("", id="step-detail")
            yield RichLog(id="runbook-log", wrap=True, markup=False, max_lines=2000)

    def on_mount(self) -> None:
        table = self.query_one("#steps", DataTable)
        table.add_column("#", key="n")
        table.add_column("State", key="state")
        table.add_column("Step", key="title")
        table.focus()
        self.query_one(RichLog).write(Text("a: apply (asks first; steps that already verify are left alone) · "
                                           "r: reload the plan · Esc: back", style="dim"))
        self.load_plan()

    @work(group="runbook-plan", exclusive=True, exit_on_error=False)
    async def load_plan(self) -> None:
        try:
            steps = await console(self).service.runbook_plan()
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.post_message(PlanLoaded(None, describe_error(e)))
            return
        self.post_message(PlanLoaded(steps))

    def on_plan_loaded(self, msg: PlanLoaded) -> None:
        if msg.steps is None:
            self.query_one(RichLog).write(Text(f"✗ plan failed: {msg.error}", style="bold red"))
            return
        self.steps = msg.steps
        table = self.query_one("#steps", DataTable)
        # the step column gets what the table has left and long titles wrap (rows grow) instead of being cut
        room = table.scrollable_content_region.width or table.size.width
        title_width = max(16, room - (len(str(len(self.steps))) + 2) - (STATE_WIDTH + 2) - 2)
        table.clear(columns=True)
        table.add_column("#", key="n")
        table.add_column("State", key="state", width=STATE_WIDTH)
        table.add_column("Step", key="title", width=title_width)
        for i, s in enumerate(self.steps, 1):
            table.add_row(Text(str(i), justify="right"), state_text(s), Text(s.title), key=s.id, height=None)
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.query_one("#steps", DataTable)
        if not self.steps or not table.row_count:
            return
        step = self.steps[table.cursor_row]
        t = Text.assemble((step.title, "bold"), "\n", state_text(step), "\n")
        if step.detail:
            t.append(step.detail + "\n")
        t.append(f"\ncommands ({len(step.commands)}):\n", style="bold")
        for c in step.commands:
            node, sep, cmd = c.partition(": ")
            t.append_text(Text.assemble((node + sep, "cyan"), cmd, "\n") if sep else Text(c + "\n"))
        self.query_one("#step-detail", Static).update(t)

    @on(DataTable.RowHighlighted, "#steps")
    def _highlighted(self) -> None:
        self._show_detail()

    def action_reload(self) -> None:
        if not self.applying:
            self.load_plan()

    def action_apply(self) -> None:
        if self.applying or not console(self).writable("applying the runbook"):
            return
        self.precheck()

    @work(group="runbook-precheck", exclusive=True, exit_on_error=False)
    async def precheck(self) -> None:
        self.query_one(RichLog).write(Text("doctor: checking what would block the runbook…", style="cyan"))
        try:
            report = await console(self).service.doctor(checks=RUNBOOK_CHECKS)
        except Exception as e:  # noqa: BLE001 - shown in the log; the operator may still apply
            self.post_message(PrecheckDone(None, describe_error(e)))
            return
        self.post_message(PrecheckDone(report))

    def on_precheck_done(self, msg: PrecheckDone) -> None:
        from rich.markup import escape

        from tui.modals.confirm import ConfirmModal
        from tui.screens.doctor import clean

        log = self.query_one(RichLog)
        blockers = [c for c in msg.report.checks if c.status == "fail"] if msg.report else []
        if msg.error:
            log.write(Text(f"doctor: could not check first: {msg.error}", style="yellow"))
        for c in blockers:
            where = f" [{', '.join(c.nodes)}]" if c.nodes else ""
            log.write(Text(f"✗ would block: {c.id}{where}: {clean(c.summary)}", style="bold red"))
            if c.fix:
                log.write(Text(f"    fix: {clean(c.fix)}"))
        if msg.report and not blockers:
            log.write(Text(f"doctor: nothing would block it ({len(msg.report.checks)} checks)", style="green"))
        question = ("Apply the runbook to every node of the inventory?\nSteps that already verify are left alone; "
                    "the others start etcd, [b]restart dockerd[/b] with the cluster store, create the network and "
                    "start probes.")
        if blockers:
            question += ("\n\n[b red]The doctor sees what would block it:[/b red]\n" +
                         "\n".join(escape(f"✗ {c.id}" + (f" [{', '.join(c.nodes)}]" if c.nodes else "") +
                                           f": {clean(c.summary)}") for c in blockers))
        self.app.push_screen(ConfirmModal(question, confirm="Apply"), self._apply_if_confirmed)

    def _apply_if_confirmed(self, ok: bool | None) -> None:
        if ok:
            self.apply()

    @work(group="runbook-apply", exclusive=True, exit_on_error=False)
    async def apply(self) -> None:
        self.applying = True
        error = None
        try:
            async for event in console(self).service.runbook_apply():
                self.post_message(RunbookProgress(event))
        except Exception as e:  # noqa: BLE001 - shown in the log
            error = describe_error(e)
        self.post_message(RunbookFinished(error))

    def on_runbook_progress(self, msg: RunbookProgress) -> None:
        ev = msg.event
        ids = [s.id for s in self.steps]
        if ev.step.id in ids:
            i = ids.index(ev.step.id)
            self.steps[i] = ev.step
            self.query_one("#steps", DataTable).update_cell(ev.step.id, "state", state_text(ev.step))
        where = f" [{ev.node}]" if ev.node else ""
        style = "cyan" if ev.step.running else "green" if ev.step.ok is True else "bold red" if ev.step.ok is False else ""
        self.query_one(RichLog).write(Text(f"{ev.step.id}{where}: {ev.message}" +
                                           (f" - {ev.step.detail}" if ev.step.detail and not ev.step.running else ""),
                                           style=style))
        self._show_detail()

    def on_runbook_finished(self, msg: RunbookFinished) -> None:
        self.applying = False
        log = self.query_one(RichLog)
        if msg.error:
            log.write(Text(f"✗ apply stopped: {msg.error}", style="bold red"))
        else:
            ok = all(s.ok is not False for s in self.steps)
            log.write(Text("apply finished: " + ("every available step verified" if ok else "a step failed"),
                           style="bold green" if ok else "bold red"))
        console(self).refresh_panes()

    def action_close(self) -> None:
        self.dismiss(None)
