"""Messages workers post to the console: results of service calls, never widget updates.

Workers call the service and post one of these; handlers on the pane or the App own every change
to the widgets (harlequin's split). Messages that may pile up say so with ``can_replace``.
"""
from __future__ import annotations

from textual.message import Message
from textual.notifications import SeverityLevel

from core.model import ClusterEvent, DoctorReport, EtcdCluster, NetworkInfo


class EtcdLoaded(Message):
    """The etcd cluster's state arrived."""

    def __init__(self, cluster: EtcdCluster) -> None:
        super().__init__()
        self.cluster = cluster  #: members, health and the cluster-health summary


class NetworksLoaded(Message):
    """The networks, merged over nodes, arrived."""

    def __init__(self, networks: list[NetworkInfo], problems: dict[str, str] | None = None) -> None:
        super().__init__()
        self.networks = networks  #: every network the cluster's nodes see
        self.problems = problems or {}  #: node (or "vni") -> why its networks are missing


class PaneFailed(Message):
    """A pane's service call failed; the pane shows the error and keeps its last rows."""

    def __init__(self, pane_id: str, error: str) -> None:
        super().__init__()
        self.pane_id = pane_id  #: id of the pane whose refresh failed
        self.error = error      #: the operator-actionable sentence


class ClusterChanged(Message):
    """The watch saw a change; coalesces, as panes refresh on their own timers."""

    def __init__(self, event: ClusterEvent) -> None:
        super().__init__()
        self.event = event  #: the latest change seen

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ClusterChanged) and message.event.kind == self.event.kind


class PaneFilled(Message):
    """A pane showed real data (or its error) for the first time."""

    def __init__(self, pane_id: str) -> None:
        super().__init__()
        self.pane_id = pane_id  #: which pane


class FirstPaint(Message):
    """Every data pane has been filled once: ``seconds`` since the app was created (bench/ui.py reads it)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds  #: from OverlayApp() to all panes filled


class Notice(Message):
    """Something a worker wants the operator to read; the App turns it into a notification."""

    def __init__(self, text: str, severity: SeverityLevel = "information", title: str = "") -> None:
        super().__init__()
        self.text = text          #: the sentence shown
        self.severity = severity  #: "information", "warning" or "error"
        self.title = title        #: where it comes from


class DoctorRan(Message):
    """A doctor report arrived (the Doctor screen, the runbook's pre-check or the console's first run)."""

    def __init__(self, report: DoctorReport) -> None:
        super().__init__()
        self.report = report  #: every check with status, nodes, evidence and fix
