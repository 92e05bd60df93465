"""The one service API every front door (CLI, TUI, SSH server) uses.

Methods take and return the dataclasses of :mod:`core.model`; live data comes as async
iterators of batches. Blocking SDKs run in threads below this layer, so every method is safe
to await from an event loop that also draws a UI.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from core.model import (
    ClusterEvent,
    CommandResult,
    ConvergeResult,
    DoctorReport,
    EtcdCluster,
    FlowStat,
    Frame,
    FrameBatch,
    FrameDetail,
    Inventory,
    KeyEntry,
    LinksSnapshot,
    LogLines,
    Names,
    NetworkInfo,
    NetworkListing,
    NodeStatus,
    PingResult,
    RunbookEvent,
    SaveTarget,
    StepState,
    TraceResult,
)

if TYPE_CHECKING:
    from core.live import LiveService
    from core.recorded.service import RecordedService


class Service(Protocol):
    """What a front door may ask of the engine. :class:`core.live.LiveService` and
    :class:`core.recorded.service.RecordedService` both implement it (the type checker proves it:
    see ``_checked`` at the end of this module)."""

    inventory: Inventory

    @property
    def read_only(self) -> bool: ...

    async def close(self) -> None: ...
    # nodes
    async def nodes(self) -> list[NodeStatus]: ...
    async def run_command(self, node: str, command: str) -> CommandResult: ...
    def follow_log(self, node: str, source: str) -> AsyncIterator[LogLines]: ...
    # each node's status as it answers (``names``: only those; None: every node), each bounded by its own
    # timeout: a node that does not answer in time comes as down with why, and never holds up the others
    def node_statuses(self, names: list[str] | None = None) -> AsyncIterator[NodeStatus]: ...
    # etcd
    async def etcd_cluster(self) -> EtcdCluster: ...
    async def etcd_keys(self, source: str, prefix: str = "") -> list[KeyEntry]: ...
    def watch(self) -> AsyncIterator[ClusterEvent]: ...
    # docker
    async def networks(self) -> list[NetworkInfo]: ...
    async def network_listing(self) -> NetworkListing: ...
    async def create_network(self, name: str, subnet: str | None = None, attachable: bool = True,
                             node: str | None = None) -> ConvergeResult: ...
    async def delete_network(self, name: str) -> None: ...
    async def ping_matrix(self) -> list[PingResult]: ...
    # runbook
    async def runbook_plan(self) -> list[StepState]: ...
    def runbook_apply(self, states: list[StepState] | None = None, *,
                      force_etcd: bool = False) -> AsyncIterator[RunbookEvent]: ...
    # capture
    async def names(self) -> Names: ...
    def capture(self, nodes: list[str], **opts: object) -> AsyncIterator[FrameBatch]: ...
    def replay(self, path: str) -> AsyncIterator[FrameBatch]: ...
    def frame_detail(self, frame: Frame) -> FrameDetail: ...
    def flows(self, frames: list[Frame]) -> list[FlowStat]: ...
    async def save_pcap(self, frames: list[Frame], path: str, *, replace: bool = False) -> int: ...
    def save_target(self, name: str) -> SaveTarget: ...
    # doctor: every known way the overlay breaks, with its fix (``checks``: only those ids)
    async def doctor(self, nodes: list[str] | None = None, *, checks: list[str] | None = None) -> DoctorReport: ...
    # links
    def links(self, nodes: list[str], seconds: float | None = None, *, interval: float = 1.0,
              active: bool = False) -> AsyncIterator[LinksSnapshot]: ...
    async def trace(self, src: str, dst: str, count: int = 3) -> TraceResult: ...
    # membership
    async def remove_node(self, name: str) -> list[str]: ...


def _checked(live: LiveService, recorded: RecordedService) -> tuple[Service, Service]:
    """Never called: mypy checks here that both implementations satisfy :class:`Service`."""
    return live, recorded
