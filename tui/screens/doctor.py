"""`!`: the doctor. Every check with its mark; each problem expands to the evidence seen and the fix.

The report comes from :meth:`core.service.Service.doctor` in a worker; `r` runs it again. Everything
shown from the nodes is plain :class:`rich.text.Text` (never markup): evidence lines are hostile.
"""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, Tree

from core.model import DoctorCheck, DoctorReport
from tui.console import console
from tui.messages import DoctorRan
from tui.panes.base import describe_error

MARKS = {"ok": ("✓ ok  ", "green"), "warn": ("! warn", "yellow"), "fail": ("✗ FAIL", "bold red")}


def clean(text: str) -> str:
    """No control characters (terminal escapes) from the nodes."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def check_label(c: DoctorCheck) -> Text:
    mark, style = MARKS.get(c.status, (c.status, ""))
    t = Text.assemble((mark, style), " ", (f"{c.id:<20}", "bold"), " ", clean(c.summary))
    if c.nodes:
        t.append(f"  [{', '.join(c.nodes)}]", style="cyan")
    return t


def summary_line(report: DoctorReport) -> Text:
    fails = [c for c in report.checks if c.status == "fail"]
    warns = sum(c.status == "warn" for c in report.checks)
    if fails:
        return Text.assemble((f"✗ {len(fails)} check(s) fail: ", "bold red"),
                             ", ".join(clean(c.id) + (f" [{', '.join(c.nodes)}]" if c.nodes else "") for c in fails),
                             (f" · {warns} warning(s)" if warns else "", "yellow"))
    return Text.assemble(("✓ nothing fails", "bold green"), (f" · {warns} warning(s)" if warns else "", "yellow"),
                         (f" · {len(report.checks)} checks in {report.seconds:.1f} s", "dim"))


class DoctorScreen(ModalScreen[None]):
    """Runs the doctor on open; problems come first and open, ok checks stay folded."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="doctor.close"),
                Binding("r", "rerun", "Run again", id="doctor.rerun"),
                Binding("e", "expand_problems", "Open all problems", id="doctor.expand")]

    def __init__(self) -> None:
        super().__init__(classes="modal")
        self.report: DoctorReport | None = None   #: the last report shown
        self.running = False                      #: a run is in progress

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="doctor-dialog"):
            yield Static("[b]Doctor[/b]: what breaks the overlay, and the fix · r run again · e open problems · "
                         "Enter open/close · Esc back", classes="dialog-title")
            yield Static("", id="doctor-summary")
            tree: Tree[DoctorCheck] = Tree("checks", id="doctor-tree")
            tree.show_root = False
            yield tree

    def on_mount(self) -> None:
        self.query_one(Tree).focus()
        self.run_doctor()

    @work(group="doctor", exclusive=True, exit_on_error=False)
    async def run_doctor(self) -> None:
        self.running = True
        self.query_one("#doctor-summary", Static).update(Text("running the checks…", style="cyan"))
        try:
            report = await console(self).service.doctor()
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.running = False
            self.query_one("#doctor-summary", Static).update(Text(f"✗ the doctor failed: {describe_error(e)}",
                                                                  style="bold red"))
            return
        self.running = False
        self.post_message(DoctorRan(report))

    def on_doctor_ran(self, msg: DoctorRan) -> None:
        # the App shows it in the header too: let the message bubble on
        self.report = msg.report
        self.query_one("#doctor-summary", Static).update(summary_line(msg.report))
        tree = self.query_one(Tree)
        tree.clear()
        order = {"fail": 0, "warn": 1, "ok": 2}
        for c in sorted(msg.report.checks, key=lambda c: order.get(c.status, 3)):
            node = tree.root.add(check_label(c), data=c, expand=c.status == "fail")
            for line in c.evidence:
                node.add_leaf(Text.assemble(("seen ", "dim"), clean(line)))
            if c.fix:
                node.add_leaf(Text.assemble(("fix  ", "bold green"), clean(c.fix)))
        tree.move_cursor(tree.root.children[0] if tree.root.children else None)

    def action_rerun(self) -> None:
        if not self.running:
            self.run_doctor()

    def action_expand_problems(self) -> None:
        for node in self.query_one(Tree).root.children:
            if node.data is not None and node.data.status != "ok":
                node.expand()

    def action_close(self) -> None:
        self.dismiss(None)
