"""Plain dataclasses that cross the service boundary (core -> CLI, TUI, SSH server).

Nothing here imports an SDK; every field is a builtin type so state can be recorded to JSON
from the real lab and replayed for deterministic UI tests (see :mod:`core.recorded.service`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    """One node of the inventory, validated."""

    name: str
    address: str                      # IP, host name or ~/.ssh/config alias used to connect
    user: str | None = None           # None: ssh config / local user decides
    port: int | None = None           # None: ssh config / 22
    key: str | None = None            # private key path; None: ssh config / default keys
    known_hosts: str | None = None    # None: ~/.ssh/known_hosts
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    advertise: str | None = None      # underlay IP for etcd and Docker; None: address if it is an IP
    capture_interface: str | None = None  # None: the interface holding the advertise address

    @property
    def ssh_target(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.address}{':' + str(self.port) if self.port else ''}"


@dataclass(frozen=True)
class ClusterSpec:
    """Cluster-wide settings from the inventory's [cluster] table."""

    etcd_token: str = "etcd-cluster-01"
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    etcd_data_dir: str = "/var/lib/etcd"
    vxlan_port: int = 4789
    network: str = "demo"             # the runbook's overlay network
    network_subnet: str | None = None # its subnet; None lets Docker choose (the lab pins one in 198.19.0.0/16)
    probe_image: str = "overlay-tui/busybox:1"
    etcd_tls: bool = True             # etcd with TLS and client certificates; False: the tutorial's plaintext
    # which nodes run an etcd member: None = the default sizing (core.etcd.sizing), a count (the first N
    # nodes of the inventory), or node names; the other nodes run no etcd and use the members' endpoints
    etcd_members: int | tuple[str, ...] | None = None
    # dockerds restarted at once by the docker-store step after the first (1: host by host); see core.dockerd.store
    docker_restart_wave: int = 4


@dataclass(frozen=True)
class Inventory:
    path: str
    nodes: tuple[NodeSpec, ...]
    cluster: ClusterSpec = field(default_factory=ClusterSpec)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


@dataclass
class CommandResult:
    node: str
    command: str
    exit_status: int | None
    stdout: str
    stderr: str
    duration: float                   # seconds

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class NodeStatus:
    name: str
    address: str
    reachable: bool
    latency_ms: float | None = None
    hostname: str | None = None
    kernel: str | None = None
    docker_version: str | None = None
    store_mode: str | None = None     # "etcd (classic)", "swarm", "local", or None if unknown
    etcd_state: str | None = None     # "running", "stopped", "not installed", or None if unknown
    error: str | None = None
    etcd_last_error: str | None = None  # a stopped etcd: the last fatal line of /var/log/etcd.log


@dataclass
class EtcdMember:
    id: str                           # hex, as etcdctl prints it
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    healthy: bool = False
    leader: bool = False
    latency_ms: float | None = None
    version: str | None = None
    db_size: int | None = None
    raft_term: int | None = None
    raft_index: int | None = None
    error: str | None = None


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    healthy: bool
    summary: list[str]                # lines like `etcdctl cluster-health`
    error: str | None = None
    tls: bool | None = None           # True: members answered over TLS; False: in plaintext; None: unknown
    warning: str | None = None        # a sentence when the store is open to the underlay (plaintext)


@dataclass
class KeyEntry:
    """One key of etcd's v3 space or Docker's v2 tree; ``value`` is pretty JSON when it parses."""

    key: str
    value: str | None
    is_dir: bool = False
    source: str = "v3"                # "v3" or "v2"


@dataclass
class ContainerInfo:
    name: str
    node: str
    network: str
    ip: str | None
    mac: str | None


@dataclass
class NetworkInfo:
    """One network as the whole cluster sees it (merged over nodes)."""

    id: str
    name: str
    driver: str
    scope: str
    subnet: str | None
    vni: int | None
    nodes: list[str]                  # nodes on which it is visible
    containers: list[ContainerInfo] = field(default_factory=list)
    attachable: bool = False


@dataclass
class NetworkListing:
    """Every network seen, and why some are missing: ``problems`` maps a node (or "vni", or "store" when etcd
    has no quorum) to a sentence."""

    networks: list[NetworkInfo]
    problems: dict[str, str] = field(default_factory=dict)


@dataclass
class ConvergeResult:
    network: str
    id: str
    seconds: float
    nodes: dict[str, bool]            # node -> visible with that ID and scope global


@dataclass
class PingResult:
    src: str                          # node name of the probe that pinged
    dst: str                          # node name of the target probe
    target: str                       # name or address pinged
    by: str                           # "name" or "address"
    sent: int
    received: int
    rtt_ms: float | None              # average RTT
    error: str | None = None

    @property
    def loss(self) -> float:
        return 1.0 if self.sent == 0 else 1.0 - self.received / self.sent


@dataclass
class StepState:
    """A runbook step's plan and, once applied or verified, its result."""

    id: str
    title: str
    ok: bool | None = None            # None: not run yet or not available
    detail: str = ""
    commands: list[str] = field(default_factory=list)   # exact commands, "node: cmd"
    running: bool = False


@dataclass
class RunbookEvent:
    """Progress of an apply: one step (and optionally one node) changed."""

    step: StepState
    node: str | None = None
    message: str = ""


@dataclass(slots=True)
class Frame:
    """One captured underlay frame, decoded by the fast path.

    Addresses are formatted by the decoder through a per-address cache (see
    :mod:`core.capture.decode`); the raw bytes stay for detail and pcap writing. The decoder builds
    Frames positionally: add new fields at the end only.
    """

    ts: float                         # epoch seconds
    node: str                         # where it was captured ("" for files)
    raw: bytes                        # captured bytes (snap length)
    wire_len: int                     # original length on the wire
    outer_src: str = ""
    outer_dst: str = ""
    outer_sport: int = 0
    outer_dport: int = 0
    vni: int | None = None
    inner_src: str = ""               # IP (or MAC for non-IP frames)
    inner_dst: str = ""
    inner_src_mac: str = ""
    inner_dst_mac: str = ""
    proto: str = ""                   # "ICMP", "TCP", "UDP", "ARP", "IPv6", ... or "MALFORMED"/"NOT-VXLAN"
    info: str = ""                    # ports, ICMP type/code, ARP who-has ...
    length: int = 0                   # inner frame length
    network: str | None = None        # VNI's network name, when known
    src_name: str | None = None       # inner source's container name, when known
    dst_name: str | None = None
    outer_src_name: str | None = None # outer source's node name, when known
    outer_dst_name: str | None = None
    error: str | None = None          # why it is malformed


@dataclass
class FrameBatch:
    frames: Sequence[Frame]           # a list, or a columnar batch whose Frames are built when read (capture worker)
    dropped: int = 0                  # frames the bounded buffer had to drop
    malformed: int = 0
    notices: list[str] = field(default_factory=list)   # e.g. "docker-node2: capture ended: ..."
    flows: list[FlowDelta] | None = None             # per-flow counts of these frames, counted where they were
                                                     # decoded (None: not counted, count the frames yourself)
    names: Names | None = None                       # the names these frames were labelled with, when they changed


@dataclass
class FlowDelta:
    """What one batch adds to one flow (key as :class:`FlowStat`'s): packets, bytes, and per time bucket
    (:class:`core.capture.flows.FlowTable`'s buckets) [packets, bytes]; a consumer merges them into its table."""

    vni: int | None
    inner_src: str
    inner_dst: str
    proto: str
    packets: int
    bytes: int
    recent: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class FrameDetail:
    layers: str                       # scapy's show() text
    hexdump: str


@dataclass
class FlowStat:
    vni: int | None
    network: str | None
    inner_src: str
    inner_dst: str
    proto: str
    packets: int
    bytes: int
    pps: float = 0.0                  # current rate
    bps: float = 0.0
    src_name: str | None = None
    dst_name: str | None = None


@dataclass
class Names:
    """What the capture names things by: VNI -> network, IP/MAC -> container@node, IP -> node."""

    networks: dict[int, str] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)


@dataclass
class LogLines:
    node: str
    source: str                       # "etcd" or "dockerd"
    lines: list[str]


@dataclass
class ClusterEvent:
    """A change seen by a watch: kind is "member", "key", "network" or "watch" (action "started": the v3
    watch is in place, value names the member; "error": it broke and is being re-established, value
    says why)."""

    kind: str
    action: str                       # "put", "delete", "added", "removed", "changed", "started", "error", "dropped"
    key: str
    value: str | None = None
    source: str = ""                  # for kind "key": "v3" or "v2" (Docker's classic store)


@dataclass
class DoctorCheck:
    """One finding of the doctor (:mod:`core.doctor`): what was checked, on which nodes, what was seen, the cure."""

    id: str                           # e.g. "ports.udp4789", "mtu.path", "etcd.quorum"
    status: str                       # "ok", "warn" or "fail"
    nodes: list[str]                  # the node(s) or node pair it concerns ([] = the whole cluster)
    summary: str                      # one sentence
    evidence: list[str] = field(default_factory=list)   # "node: `command` -> the line seen"
    fix: str = ""                     # the command or config change that cures it ("" when ok)


@dataclass
class DoctorReport:
    """Every check the doctor ran; ``ok`` when none failed (warnings do not fail it)."""

    checks: list[DoctorCheck]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)


@dataclass
class LinkStat:
    """One directed node pair (and one VNI, or every VNI when ``vni`` is None) as the links matcher saw it:
    frames seen leaving ``src`` and arriving at ``dst``. Delays are one-way with the clock offset removed."""

    src: str
    dst: str
    vni: int | None = None
    sent: int = 0                     # seen leaving src (towards dst)
    received: int = 0                 # of those, seen arriving at dst
    lost: int = 0                     # seen leaving, not arriving within the window
    reordered: int = 0                # arrived after a frame sent later
    duplicated: int = 0               # extra copies seen arriving
    rx_only: int = 0                  # seen arriving with no sighting at src (src's capture missed it)
    delay_p50_ms: float | None = None
    delay_p99_ms: float | None = None
    delay_max_ms: float | None = None
    offset_ms: float | None = None    # dst clock minus src clock (removed from the delays); None: not estimated
    uncertainty_ms: float | None = None  # the delays are right to +- this (None: offset not estimated)
    loss_history: list[float | None] = field(default_factory=list)      # last minute, per second (None: idle)
    delay_history_ms: list[float | None] = field(default_factory=list)  # least delay per second

    @property
    def loss(self) -> float:
        """Lost over resolved (received + lost); 0 when nothing was resolved yet."""
        done = self.received + self.lost
        return self.lost / done if done else 0.0


@dataclass
class LinksSnapshot:
    """Every ordered pair of the watched nodes (``pairs``, all VNIs together) and per VNI (``per_vni``)."""

    nodes: list[str]
    pairs: list[LinkStat]
    per_vni: list[LinkStat] = field(default_factory=list)
    span: float = 0.0                 # seconds of capture covered
    frames: int = 0                   # sightings looked at
    pending: int = 0                  # sightings waiting for their other end
    evicted: int = 0                  # pending sightings dropped to keep memory bounded (not counted lost)
    in_flight: int = 0                # at the end: sent within the last window, not judged
    unwatched: int = 0                # frames to or from a node not captured (cannot be matched)
    clock_notes: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    final: bool = False


@dataclass
class TraceHop:
    """One point of a traced ping's path, for one echo (``seq``): where and when it was seen (None: not seen)."""

    seq: int
    step: int                         # 1..8 along the path: request out, over, in; reply out, over, back
    point: str                        # e.g. "request leaves probe-docker-node1", "VXLAN request arrives at docker-node2"
    node: str
    ts: float | None = None


@dataclass
class TraceResult:
    """A traced ping from a container: every hop of every echo, and where each one was last seen."""

    src: str                          # source container
    dst: str                          # target as given
    src_node: str
    dst_node: str | None              # None: the target is not a known container
    src_ip: str
    dst_ip: str
    hops: list[TraceHop] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)   # one sentence per echo
    unobservable: list[str] = field(default_factory=list)  # hops that could not be watched, and why
    ping_output: str = ""


@dataclass
class SaveTarget:
    """Where a file the console user named will be written (see :class:`core.files.SaveArea`)."""

    path: str                         # the full path on the host running the console
    exists: bool                      # something is there already: saving needs the operator's yes (replace)
    served: bool                      # a served console: the file is on the serving host, in the session's directory
    fetch: str | None = None          # served: the command that copies it to the operator's machine (scp ...)
