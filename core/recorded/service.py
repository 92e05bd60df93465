"""A :class:`core.service.Service` over state recorded from a real lab (``overlay-tui record``).

The console's deterministic tests and screenshots run on it: every read returns the recorded
dataclasses, and every mutation changes the in-memory copy only (a created network gets an id
derived from its name; a runbook apply replays the recorded events with no sleeps). Frames come
from :mod:`core.recorded.capture` when that module exists.

The JSON format (``"format": 1``) is written by :func:`state_to_json`::

    {"format": 1, "recorded_at": str, "inventory": {"path", "nodes": [NodeSpec], "cluster": ClusterSpec},
     "nodes": [NodeStatus], "etcd": EtcdCluster, "keys": {"v3": [KeyEntry], "v2": [KeyEntry]},
     "networks": [NetworkInfo], "ping_matrix": [PingResult], "runbook": {"plan": [StepState],
     "events": [RunbookEvent]}, "names": Names, "logs": {"NODE/SOURCE": [str]},
     "commands": {"NODE/COMMAND": CommandResult}, "capture": {...}, "errors": {part: str},
     "doctor": DoctorReport}
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core import checks
from core.access import WriteGuard
from core.dockerd.validation import require_valid
from core.errors import DockerError, OverlayError, UsageError
from core.etcd.health import removal_refusal
from core.files import SaveArea
from core.links.replay import TwoEndedReplay
from core.links.service import LinksService
from core.model import (
    ClusterEvent,
    ClusterSpec,
    CommandResult,
    ContainerInfo,
    ConvergeResult,
    DoctorCheck,
    DoctorReport,
    EtcdCluster,
    EtcdMember,
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
    NodeSpec,
    NodeStatus,
    PingResult,
    RunbookEvent,
    SaveTarget,
    StepState,
    TraceResult,
)
from core.nodes.answers import ANSWER_TIMEOUT, as_they_answer
from core.paths import served_files_dir
from core.recorded.capture import RecordedCapture
from core.text import scrub

STATE_FORMAT = 1


def inventory_from_dict(d: dict[str, Any]) -> Inventory:
    return Inventory(path=d.get("path", "recorded"), nodes=tuple(NodeSpec(**n) for n in d.get("nodes", [])),
                     cluster=ClusterSpec(**d.get("cluster", {})))


def cluster_from_dict(d: dict[str, Any]) -> EtcdCluster:
    members = [EtcdMember(**m) for m in d.get("members", [])]
    return EtcdCluster(members=members, healthy=d.get("healthy", False), summary=list(d.get("summary", [])),
                       error=d.get("error"), tls=d.get("tls"), warning=d.get("warning"))


def network_from_dict(d: dict[str, Any]) -> NetworkInfo:
    d = dict(d)
    d["containers"] = [ContainerInfo(**c) for c in d.get("containers", [])]
    return NetworkInfo(**d)


def names_from_dict(d: dict[str, Any]) -> Names:
    return Names(networks={int(k): v for k, v in d.get("networks", {}).items()},
                 containers=dict(d.get("containers", {})), nodes=dict(d.get("nodes", {})))


def event_from_dict(d: dict[str, Any]) -> RunbookEvent:
    return RunbookEvent(step=StepState(**d["step"]), node=d.get("node"), message=d.get("message", ""))


def state_to_json(state: dict[str, Any]) -> str:
    """Serialise a state dict whose values may be dataclasses (as ``record`` gathers them)."""
    def plain(v: Any) -> Any:
        if hasattr(v, "__dataclass_fields__"):
            return asdict(v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return json.dumps({"format": STATE_FORMAT, **plain(state)}, indent=1, sort_keys=False) + "\n"


class RecordedService:
    """Implements :class:`core.service.Service` from a recorded JSON state, in memory.

    ``state`` is the parsed JSON (its capture part reads ``state["capture"]``); ``state_path`` is
    where it came from (relative file names in it resolve against its directory).
    """

    def __init__(self, state: dict[str, Any], *, read_only: bool = False, state_path: str | Path | None = None,
                 served_session: str | None = None) -> None:
        if state.get("format") != STATE_FORMAT:
            raise UsageError(f"{state_path or 'recorded state'}: format {state.get('format')!r} is not "
                             f"{STATE_FORMAT}; record it again with `overlay-tui record --out FILE`")
        self.state = scrub(copy.deepcopy(state))   # recorded from nodes: as hostile as they are
        self.state_path = Path(state_path) if state_path else None
        self.guard = WriteGuard(read_only)
        self.saves = SaveArea(self.guard, served_session, served_files_dir())
        self.inventory = inventory_from_dict(self.state.get("inventory", {}))
        self._networks = [network_from_dict(n) for n in self.state.get("networks", [])]
        self._watchers: list[asyncio.Queue[ClusterEvent]] = []
        self.capture_part = RecordedCapture(self.state, self.state_path, self.inventory, self.networks,
                                            saves=self.saves)
        links_pcap = (self.state.get("capture") or {}).get("links_pcap") or "links_lab.pcap"
        base = self.state_path.parent if self.state_path else Path.cwd()
        self.links_replay = TwoEndedReplay(base / links_pcap, self.inventory,
                                           names_from_dict(self.state.get("names") or {}))
        self.links_part = LinksService(self.links_replay.sightings, self.links_replay.node_names, settle=0.0)
        self.status_timeout = ANSWER_TIMEOUT    #: seconds a node's status may take in node_statuses

    @property
    def read_only(self) -> bool:
        return self.guard.read_only

    @classmethod
    def load(cls, path: str | Path, *, read_only: bool = False, served_session: str | None = None) -> RecordedService:
        p = Path(path)
        try:
            state = json.loads(p.read_text())
        except OSError as e:
            raise UsageError(f"{p}: cannot read the recorded state: {e.strerror}") from e
        except ValueError as e:
            raise UsageError(f"{p}: not valid JSON: {e}") from e
        return cls(state, read_only=read_only, state_path=p, served_session=served_session)

    def _fail(self, part: str) -> None:
        """Errors recorded for a part (e.g. etcd unreachable at record time) are raised again here."""
        err = self.state.get("errors", {}).get(part)
        if err:
            raise OverlayError(err)

    async def close(self) -> None:
        """Nothing to close: the recording is in memory."""

    # nodes
    async def nodes(self) -> list[NodeStatus]:
        self._fail("nodes")
        return [NodeStatus(**n) for n in self.state.get("nodes", [])]

    async def run_command(self, node: str, command: str) -> CommandResult:
        self.guard.require("running commands on nodes")
        checks.command(command)
        checks.node(self.inventory, node)
        rec = self.state.get("commands", {}).get(f"{node}/{command.strip()}")
        if rec:
            return CommandResult(**rec)
        return CommandResult(node, command, 0, f"(recorded state: no output was recorded for `{command}` on {node})\n",
                             "", 0.0)

    async def follow_log(self, node: str, source: str) -> AsyncIterator[LogLines]:
        checks.log_source(source)
        checks.node(self.inventory, node)
        lines = self.state.get("logs", {}).get(f"{node}/{source}", [])
        for i in range(0, len(lines), 50):
            yield LogLines(node, source, list(lines[i:i + 50]))

    async def node_status(self, name: str) -> NodeStatus:
        """One node's recorded status (as :meth:`nodes` holds it; a node recorded without one: down, saying so)."""
        spec = checks.node(self.inventory, name)
        found = next((n for n in await self.nodes() if n.name == name), None)
        return found or NodeStatus(name=name, address=spec.address, reachable=False,
                                   error=f"{name}: no status was recorded for this node")

    def node_statuses(self, names: list[str] | None = None) -> AsyncIterator[NodeStatus]:
        """Each node's status as :meth:`node_status` gives it, each bounded by ``status_timeout`` (as live)."""
        specs = list(self.inventory.nodes) if names is None else [checks.node(self.inventory, n) for n in names]
        return as_they_answer(specs, lambda s: self.node_status(s.name), self.status_timeout)

    # etcd
    async def etcd_cluster(self) -> EtcdCluster:
        self._fail("etcd")
        return cluster_from_dict(self.state.get("etcd", {}))

    async def etcd_keys(self, source: str, prefix: str = "") -> list[KeyEntry]:
        checks.key_source(source)
        self._fail(f"keys_{source}")
        return [KeyEntry(**k) for k in self.state.get("keys", {}).get(source, []) if k["key"].startswith(prefix)]

    async def watch(self) -> AsyncIterator[ClusterEvent]:
        """Changes made through this service (create/delete network), as the live watch reports them."""
        q: asyncio.Queue[ClusterEvent] = asyncio.Queue()
        self._watchers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._watchers.remove(q)

    def _announce(self, event: ClusterEvent) -> None:
        for q in self._watchers:
            q.put_nowait(event)

    # docker
    async def networks(self) -> list[NetworkInfo]:
        self._fail("networks")
        return copy.deepcopy(self._networks)

    async def network_listing(self) -> NetworkListing:
        return NetworkListing(await self.networks())

    async def create_network(self, name: str, subnet: str | None = None, attachable: bool = True,
                             node: str | None = None) -> ConvergeResult:
        self.guard.require("creating networks")
        subnet = require_valid(name, subnet, self._networks)
        if node is not None:
            checks.node(self.inventory, node)
        net_id = hashlib.sha256(f"recorded:{name}".encode()).hexdigest()
        used = [n.vni for n in self._networks if n.vni is not None]
        nodes = [n.name for n in self.inventory.nodes]
        self._networks.append(NetworkInfo(id=net_id, name=name, driver="overlay", scope="global", subnet=subnet,
                                          vni=max(used, default=255) + 1, nodes=nodes, attachable=attachable))
        self._announce(ClusterEvent("network", "put", f"/docker/network/v1.0/network/{net_id}"))
        return ConvergeResult(network=name, id=net_id, seconds=0.0, nodes={n: True for n in nodes})

    async def delete_network(self, name: str) -> None:
        self.guard.require("deleting networks")
        net = next((n for n in self._networks if n.name == name), None)
        if net is None:
            raise DockerError(f"network {name} does not exist")
        if net.containers:
            raise DockerError(f"network {name} has active endpoints: "
                              + ", ".join(f"{c.name}@{c.node}" for c in net.containers))
        self._networks.remove(net)
        self._announce(ClusterEvent("network", "delete", f"/docker/network/v1.0/network/{net.id}"))

    async def ping_matrix(self) -> list[PingResult]:
        self._fail("ping_matrix")
        return [PingResult(**p) for p in self.state.get("ping_matrix", [])]

    # runbook
    async def runbook_plan(self) -> list[StepState]:
        self._fail("runbook")
        return [StepState(**s) for s in self.state.get("runbook", {}).get("plan", [])]

    async def runbook_apply(self, states: list[StepState] | None = None, *,
                            force_etcd: bool = False) -> AsyncIterator[RunbookEvent]:
        self.guard.require("applying the runbook")
        events = self.state.get("runbook", {}).get("events")
        if events:
            for e in events:
                yield event_from_dict(e)
            return
        for step in await self.runbook_plan():  # none recorded: every planned step verifies
            step.running = True
            yield RunbookEvent(copy.deepcopy(step), message="verifying")
            step.running, step.ok = False, True
            step.detail = step.detail or "ok (recorded state)"
            yield RunbookEvent(step, message="ok")

    # capture
    async def names(self) -> Names:
        return await self.capture_part.names()

    def capture(self, nodes: list[str], **opts: object) -> AsyncIterator[FrameBatch]:
        return self.capture_part.capture(nodes)

    def replay(self, path: str) -> AsyncIterator[FrameBatch]:
        return self.capture_part.replay(path)

    def frame_detail(self, frame: Frame) -> FrameDetail:
        return self.capture_part.frame_detail(frame)

    def flows(self, frames: list[Frame]) -> list[FlowStat]:
        return self.capture_part.flows(frames)

    async def save_pcap(self, frames: list[Frame], path: str, *, replace: bool = False) -> int:
        return await self.capture_part.save_pcap(frames, path, replace=replace)

    def save_target(self, name: str) -> SaveTarget:
        return self.capture_part.save_target(name)

    # doctor
    async def doctor(self, nodes: list[str] | None = None, *, checks: list[str] | None = None) -> DoctorReport:
        """The recorded report (filtered to ``nodes`` and ``checks``), or one row saying none was recorded."""
        names = [n.name for n in self.inventory.nodes]
        for n in nodes or []:
            if n not in names:
                raise UsageError(f"unknown node {n!r}; the inventory has {', '.join(names)}")
        self._fail("doctor")
        rec = self.state.get("doctor")
        if rec is None:
            return DoctorReport([DoctorCheck("recorded", "warn", [], "no doctor report was recorded in this state",
                                             [], "record it again with `overlay-tui record --out FILE`")])
        rows = [DoctorCheck(**c) for c in rec.get("checks", [])]
        rows = [c for c in rows if (not checks or c.id in checks)
                and (not nodes or not c.nodes or set(c.nodes) & set(nodes))]
        return DoctorReport(rows, rec.get("seconds", 0.0))

    # links
    def links(self, nodes: list[str], seconds: float | None = None, *, interval: float = 1.0,
              active: bool = False) -> AsyncIterator[LinksSnapshot]:
        """The recorded two-ended capture (core.links.replay) through the live matcher."""
        return self.links_part.links(nodes, seconds, interval=interval, active=active)

    async def trace(self, src: str, dst: str, count: int = 3) -> TraceResult:
        """A trace sends pings: recorded state has nothing to send them from."""
        raise OverlayError("a trace sends pings from a container: it needs live nodes, not recorded state")

    # membership
    async def remove_node(self, name: str) -> list[str]:
        """In memory, as :mod:`core.nodes.remove` does on live nodes (same refusals: unknown, last node, quorum)."""
        self.guard.require("removing a node")
        names = [n.name for n in self.inventory.nodes]
        checks.node(self.inventory, name)
        if len(names) == 1:
            raise UsageError(f"{name} is the only node of the inventory: there would be no cluster left")
        members = self.state.setdefault("etcd", {}).setdefault("members", [])
        member = next((m for m in members if m.get("name") == name), None)
        refusal = removal_refusal(name, cluster_from_dict(self.state["etcd"]).members)
        if refusal:
            raise UsageError(f"{refusal}; nothing was changed")
        done = []
        for net in self._networks:
            for c in [c for c in net.containers if c.node == name and c.name.startswith("probe-")]:
                net.containers.remove(c)
                done.append(f"{name}: probe container {c.name} removed")
        if member is not None:
            members.remove(member)
            done.append(f"etcd member {member.get('id')} of {name} removed (member-remove)")
        done.append(f"{name}: cluster-store and cluster-advertise taken out of /etc/docker/daemon.json; "
                    "dockerd restarted (recorded state: in memory only)")
        self.state["nodes"] = [n for n in self.state.get("nodes", []) if n.get("name") != name]
        self.inventory = dataclasses.replace(self.inventory, nodes=tuple(n for n in self.inventory.nodes
                                                                         if n.name != name))
        done.append(f"{name} removed from the inventory {self.inventory.path}")
        return done
