"""The service on real nodes: one façade over parts built and wired in its constructor.

``LiveService.open(path)`` resolves the inventory (the lab's when none is given). The constructor
shows every dependency: one SSH pool → the nodes' underlay addresses, Docker SDK clients and the
etcd reader → the nodes, etcd, Docker and capture parts → the runbook (which sees the façade only
through the narrow :class:`core.runbook.steps.RunbookTarget`). :meth:`close` closes what was opened,
in reverse order.
"""
from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from core.access import WriteGuard
from core.capture.service import CaptureService
from core.dockerd.clients import DockerNodes
from core.dockerd.networks import OverlayNetworks
from core.dockerd.probes import Probes
from core.dockerd.service import DockerService
from core.dockerd.store import DockerStoreChange
from core.doctor.runner import Doctor
from core.errors import DockerError, InventoryError, NoInventoryError, OverlayError
from core.etcd.health import no_quorum_reason
from core.etcd.plan import EtcdMemberPlan
from core.etcd.read import EtcdReader
from core.etcd.service import EtcdApplied, EtcdService
from core.files import SaveArea
from core.inventory import load_inventory
from core.links.active import ActivePinger
from core.links.service import LinksService
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
from core.nodes.address import UnderlayAddresses
from core.nodes.remove import NodeRemoval
from core.nodes.service import NodeService
from core.paths import lab_dir, served_files_dir
from core.pki.cluster import ClusterPKI
from core.runbook.lock import ApplyLock
from core.runbook.runbook import Runbook
from core.ssh import SSHPool
from core.text import scrub, scrubbed
from core.trace.service import TraceService


class LiveService:
    """Implements :class:`core.service.Service` over SSH, etcd and the Docker SDK."""

    def __init__(self, inventory: Inventory, *, read_only: bool = False, served_session: str | None = None) -> None:
        """``served_session``: the id of the `serve` session this console runs in (files confined to its directory)."""
        self.inventory = inventory
        self.guard = WriteGuard(read_only)
        self.saves = SaveArea(self.guard, served_session, served_files_dir())
        self.pool = SSHPool(inventory.nodes)
        self.addresses = UnderlayAddresses(self.pool)
        self.docker = DockerNodes(self.pool)
        self.pki = ClusterPKI.for_inventory(inventory)        # the cluster's CA and certificates (etcd TLS)
        self.etcd_reader = EtcdReader(self.pool, credentials=self.pki.operator)
        self.node_part = NodeService(inventory, self.pool, self.docker, self.guard)
        self.etcd = EtcdService(inventory, self.pool, self.addresses, self.etcd_reader, self.guard, self.pki)
        networks = OverlayNetworks(self.docker, self.pool, inventory)
        self.dockerd = DockerService(inventory, self.pool, self.docker, self.addresses, networks,
                                     Probes(self.docker, inventory), self.guard)
        self.capture_part = CaptureService(inventory, self.pool, self.dockerd.networks, self.saves)
        self.runbook = Runbook(self, self.guard, lock=ApplyLock(self.pool, inventory))
        self.doctor_part = Doctor(inventory, self.pool, self.docker, self.etcd_reader, self.addresses)
        self.links_part = LinksService(self.capture_part.capture, self.capture_nodes,
                                       ActivePinger(self.dockerd.probes))
        self.trace_part = TraceService(inventory, self.pool, self.docker, self.dockerd.networks,
                                       self.capture_part.capture)
        self.removal = NodeRemoval(inventory, self.pool, self.docker, self.etcd, self.guard, self.addresses)
        self.removed: set[str] = set()   # nodes removed through this service: its inventory still lists them
        self._closers: list[Callable[[], Awaitable[None]]] = [self.pool.close, self.etcd_reader.close,
                                                              self.docker.close, networks.close]

    @classmethod
    def open(cls, inventory_path: str | None = None, *, read_only: bool = False,
             served_session: str | None = None) -> LiveService:
        return cls(resolve_inventory(inventory_path), read_only=read_only, served_session=served_session)

    @property
    def read_only(self) -> bool:
        return self.guard.read_only

    async def close(self) -> None:
        """Stop the network listings in flight, close the Docker clients, the etcd reader, then the SSH pool (a
        failure in one still closes the rest)."""
        errors: list[BaseException] = []
        while self._closers:
            try:
                await self._closers.pop()()
            except (OSError, RuntimeError) as e:       # closing on the way out: keep closing the others
                errors.append(e)
        if errors:
            raise errors[0]

    # --- nodes --------------------------------------------------------------------------
    async def nodes(self) -> list[NodeStatus]:
        return scrub(await self.node_part.nodes())

    async def node_status(self, name: str) -> NodeStatus:
        return scrub(await self.node_part.node_status(name))

    async def run_command(self, node: str, command: str) -> CommandResult:
        return scrub(await self.node_part.run_command(node, command))

    def follow_log(self, node: str, source: str) -> AsyncIterator[LogLines]:
        return scrubbed(self.node_part.follow_log(node, source))

    def node_statuses(self, names: list[str] | None = None) -> AsyncIterator[NodeStatus]:
        return scrubbed(self.node_part.statuses(names))

    # --- etcd ---------------------------------------------------------------------------
    async def etcd_cluster(self) -> EtcdCluster:
        return scrub(await self.etcd.cluster())

    async def etcd_plan(self) -> list[EtcdMemberPlan]:
        return scrub(await self.etcd.plan())

    async def etcd_apply(self, force: bool = False, timeout: float = 40.0) -> EtcdApplied:
        return scrub(await self.etcd.apply(force=force, timeout=timeout))

    async def etcd_keys(self, source: str, prefix: str = "") -> list[KeyEntry]:
        return scrub(await self.etcd.keys(source, prefix))

    def watch(self) -> AsyncIterator[ClusterEvent]:
        return scrubbed(self.etcd.watch())

    # --- docker -------------------------------------------------------------------------
    async def docker_store_plan(self) -> list[DockerStoreChange]:
        return scrub(await self.dockerd.store_plan())

    async def docker_store_apply(self) -> list[DockerStoreChange]:
        return scrub(await self.dockerd.store_apply())

    async def networks(self) -> list[NetworkInfo]:
        return scrub(await self.dockerd.networks())

    async def network_listing(self) -> NetworkListing:
        """The networks, and why some are missing; when the store has lost its quorum, the reason says so
        ("unknown: etcd has no quorum ...") instead of the networks silently vanishing."""
        answers = await asyncio.gather(self.dockerd.listing(), self.etcd.cluster(), return_exceptions=True)
        listing, cluster = answers
        why = no_quorum_reason(cluster) if isinstance(cluster, EtcdCluster) else None
        if isinstance(listing, BaseException):
            if why and isinstance(listing, DockerError):
                raise DockerError(f"networks unknown: {why}; {listing}") from None
            raise listing
        if why:
            listing.problems = {k: f"unknown: {why}; {v}" for k, v in listing.problems.items()}
            listing.problems["store"] = f"unknown: {why}: " + await self._store_networks_missing(listing)
        return scrub(listing)

    async def _store_networks_missing(self, listing: NetworkListing) -> str:
        """Which of the store's networks Docker does not list (a v2 read is served by a member without quorum)."""
        try:
            keys = await self.etcd.keys("v2", "/docker/network/v1.0/network")
        except OverlayError:
            return "the overlay networks kept in the store cannot be listed"
        shown = {n.id for n in listing.networks}
        names = []
        for k in keys:
            net_id = k.key.rsplit("/", 1)[-1]
            if k.is_dir or net_id in shown:
                continue
            try:
                names.append(str(json.loads(k.value or "{}").get("name") or net_id[:12]))
            except ValueError:
                names.append(net_id[:12])
        if not names:
            return "every network of the store is still listed, but none can be created, changed or deleted"
        return f"{', '.join(sorted(names))} cannot be listed by Docker (kept in the store)"

    async def create_network(self, name: str, subnet: str | None = None, attachable: bool = True,
                             node: str | None = None) -> ConvergeResult:
        return scrub(await self.dockerd.create_network(name, subnet=subnet, attachable=attachable, node=node))

    async def delete_network(self, name: str) -> None:
        await self.dockerd.delete_network(name)

    async def start_probes(self, network: str, again: frozenset[str] = frozenset()) -> dict[str, str]:
        return await self.dockerd.start_probes(network, again)

    async def remove_probes(self, network: str | None = None) -> list[str]:
        return await self.dockerd.remove_probes(network)

    async def ping_matrix(self) -> list[PingResult]:
        return scrub(await self.dockerd.ping_matrix())

    # --- runbook ------------------------------------------------------------------------
    async def runbook_plan(self) -> list[StepState]:
        self._refuse_stale_inventory()
        return scrub(await self.runbook.plan())

    def runbook_apply(self, states: list[StepState] | None = None, *,
                      force_etcd: bool = False) -> AsyncIterator[RunbookEvent]:
        return scrubbed(self._apply(states, force_etcd))

    async def _apply(self, states: list[StepState] | None, force_etcd: bool) -> AsyncIterator[RunbookEvent]:
        self._refuse_stale_inventory()
        async for event in self.runbook.apply(states, force_etcd=force_etcd):
            yield event

    async def runbook_verify(self) -> list[StepState]:
        self._refuse_stale_inventory()
        return scrub(await self.runbook.verify())

    def _refuse_stale_inventory(self) -> None:
        """After a removal through this service, the inventory it was opened with still lists the node: a runbook
        over it would add the node back, so it is refused until the inventory is loaded again."""
        if self.removed:
            gone = ", ".join(sorted(self.removed))
            raise InventoryError(self.inventory.path, f"{gone} was removed from the cluster and this file by this "
                                 "console, which still holds the inventory it was opened with (a runbook would add "
                                 "it back): restart the console to load the file without it")

    # --- capture ------------------------------------------------------------------------
    async def names(self) -> Names:
        return scrub(await self.capture_part.names())

    def capture(self, nodes: list[str], **opts: object) -> AsyncIterator[FrameBatch]:
        return self.capture_part.capture(nodes, **opts)

    def capture_nodes(self, nodes: list[str] | None) -> list[str]:
        """The names of ``nodes`` (every node when empty); an unknown name is a usage error."""
        return [n.name for n in self.capture_part.capture_nodes(nodes)]

    def replay(self, path: str) -> AsyncIterator[FrameBatch]:
        return self.capture_part.replay(path)

    def frame_detail(self, frame: Frame) -> FrameDetail:
        return scrub(self.capture_part.frame_detail(frame))

    def flows(self, frames: list[Frame]) -> list[FlowStat]:
        return scrub(self.capture_part.flows(frames))

    async def save_pcap(self, frames: list[Frame], path: str, *, replace: bool = False) -> int:
        return await self.capture_part.save_pcap(frames, path, replace=replace)

    def save_target(self, name: str) -> SaveTarget:
        return self.capture_part.save_target(name)

    # --- doctor -------------------------------------------------------------------------
    async def doctor(self, nodes: list[str] | None = None, *, checks: list[str] | None = None) -> DoctorReport:
        return scrub(await self.doctor_part.run(nodes, checks))

    # --- links --------------------------------------------------------------------------
    def links(self, nodes: list[str], seconds: float | None = None, *, interval: float = 1.0,
              active: bool = False) -> AsyncIterator[LinksSnapshot]:
        return scrubbed(self.links_part.links(nodes, seconds, interval=interval, active=active))

    async def trace(self, src: str, dst: str, count: int = 3) -> TraceResult:
        return scrub(await self.trace_part.trace(src, dst, count))

    # --- membership ---------------------------------------------------------------------
    async def remove_node(self, name: str) -> list[str]:
        lines = await self.removal.remove(name)
        self.removed.add(name)
        return lines


def resolve_inventory(path: str | None) -> Inventory:
    """``path`` if given, else $OVERLAY_TUI_INVENTORY, else the default lab's inventory when it is up."""
    path = path or os.environ.get("OVERLAY_TUI_INVENTORY")
    if path:
        return load_inventory(path)
    lab_inv = lab_dir("lab") / "inventory.toml"
    if lab_inv.is_file():
        return load_inventory(lab_inv)
    raise NoInventoryError("no inventory given and no lab is up: pass --inventory FILE (see README, "
                           "'Your own hosts') or start the local lab with `overlay-tui lab up`")
