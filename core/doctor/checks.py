"""One small async function per check, over a shared :class:`DoctorContext`.

The context gathers each node's facts once (one SSH round trip per node, :mod:`core.doctor.facts`)
and runs each shared probe once (the port test, the path MTU pings, the etcd cluster read), whatever
number of checks use them. Each check returns :class:`core.model.DoctorCheck` rows; :data:`CHECKS`
is the registry (id -> function), in the order the report shows them.
"""
from __future__ import annotations

import asyncio
import importlib.metadata
import os
import shlex
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from core.doctor import parse
from core.doctor.facts import NodeFacts, facts_script
from core.doctor.ids import RUNBOOK_CHECKS
from core.doctor.probes import PORTS, PortProbe, probe_pmtu, probe_ports
from core.errors import OverlayError
from core.etcd.read import Endpoint
from core.model import DoctorCheck, EtcdCluster, Inventory

NODE_TIMEOUT = 8.0      # one node's facts, or one Docker call


class DoctorContext:
    """What the checks share: the parts handed in, the nodes asked about, and memoised facts and probes."""

    def __init__(self, inventory: Inventory, pool, docker, reader, addresses, nodes: list[str]) -> None:
        self.inventory, self.pool, self.docker, self.reader, self.addresses = inventory, pool, docker, reader, addresses
        self.nodes = nodes                               # the nodes checked (the --node selection)
        self.all_nodes = [n.name for n in inventory.nodes]
        self._once: dict[str, asyncio.Task] = {}

    def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        """The result of ``make()``, computed once per run whatever the number of checks awaiting it."""
        task = self._once.get(key)
        if task is None:
            task = self._once[key] = asyncio.ensure_future(make())
        return asyncio.shield(task)

    async def close(self) -> None:
        for task in self._once.values():
            task.cancel()
        await asyncio.gather(*self._once.values(), return_exceptions=True)

    async def ips(self) -> dict[str, str]:
        async def resolve() -> dict[str, str]:
            got = await asyncio.gather(*(self.addresses.of(n) for n in self.all_nodes), return_exceptions=True)
            return {n: ip for n, ip in zip(self.all_nodes, got) if isinstance(ip, str)}
        return await self.once("ips", resolve)

    async def facts(self, node: str) -> NodeFacts:
        async def gather() -> NodeFacts:
            ips = await self.ips()
            ip = ips.get(node)
            if ip is None:
                raise OverlayError(f"{node}: its underlay address is unknown")
            res = await self.pool.run(node, facts_script(ip), timeout=NODE_TIMEOUT)
            return NodeFacts(node, ip, parse.sections(res.stdout))
        return await self.once(f"facts:{node}", gather)

    async def reachable(self, nodes: list[str] | None = None) -> tuple[dict[str, NodeFacts], dict[str, str]]:
        """(facts of the nodes that answered, node -> why it did not)."""
        names = nodes if nodes is not None else self.nodes
        got = await asyncio.gather(*(self.facts(n) for n in names), return_exceptions=True)
        ok, bad = {}, {}
        for n, f in zip(names, got):
            if isinstance(f, NodeFacts):
                ok[n] = f
            elif isinstance(f, Exception):
                bad[n] = str(f)
            else:
                raise f
        return ok, bad

    def pairs(self, among: list[str]) -> list[tuple[str, str]]:
        """Ordered pairs of ``among`` with at least one end in the selection."""
        return [(a, b) for a in among for b in among if a != b and (a in self.nodes or b in self.nodes)]

    async def ports(self) -> tuple[PortProbe, list[tuple[str, str]]]:
        async def run() -> tuple[PortProbe, list[tuple[str, str]]]:
            facts, _ = await self.reachable(self.all_nodes)
            ips = await self.ips()
            pairs = self.pairs([n for n in self.all_nodes if n in facts and n in ips])
            return await probe_ports(self.pool, ips, pairs), pairs
        return await self.once("ports", run)

    async def pmtu(self) -> tuple[dict, dict[str, str], dict[str, str]]:
        async def run() -> tuple[dict, dict[str, str], dict[str, str]]:
            facts, _ = await self.reachable(self.all_nodes)
            ips = await self.ips()
            return await probe_pmtu(self.pool, ips, self.pairs([n for n in self.all_nodes if n in facts and n in ips]))
        return await self.once("pmtu", run)

    async def etcd_nodes(self) -> list[str]:
        """The nodes that run an etcd member (read from the nodes, not assumed: not every node runs one)."""
        facts, _ = await self.reachable(self.all_nodes)
        return [n for n in self.all_nodes if n in facts and facts[n].runs_etcd]

    async def etcd_tls(self) -> dict[str, bool]:
        """Per node running etcd: does it serve its clients over TLS (read from its own flags)?"""
        facts, _ = await self.reachable(self.all_nodes)
        return {n: "https://" in f.etcd_flags.get("listen-client-urls", "") for n, f in facts.items() if f.runs_etcd}

    async def etcd_cluster(self) -> EtcdCluster | None:
        async def read() -> EtcdCluster | None:
            nodes = await self.etcd_nodes()
            if not nodes:
                return None
            ips = await self.ips()
            port = self.inventory.cluster.etcd_client_port
            tls = await self.etcd_tls()
            return await self.reader.cluster([Endpoint(via=n, host=ips[n], port=port, tls=tls[n]) for n in nodes])
        return await self.once("etcd", read)

    async def docker_info(self, node: str) -> dict:
        async def call() -> dict:
            return await asyncio.wait_for(self.docker.call(node, lambda c: c.info()), NODE_TIMEOUT)
        return await self.once(f"info:{node}", call)


def _skipped(bad: dict[str, str]) -> list[str]:
    return [f"{n}: not checked: {why}" for n, why in bad.items()]


def row(id: str, status: str, nodes: list[str], summary: str, evidence: list[str] | None = None,
        fix: str = "") -> DoctorCheck:
    return DoctorCheck(id=id, status=status, nodes=nodes, summary=summary, evidence=evidence or [],
                       fix=fix if status != "ok" else "")


def worst(statuses: list[str]) -> str:
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


# --- the checks -----------------------------------------------------------------------------------
async def check_ssh(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    if bad:
        return [row("ssh", "fail", sorted(bad), f"{len(bad)} node(s) cannot be checked: SSH does not reach them",
                    [f"{n}: {why}" for n, why in bad.items()],
                    "bring the node up and check sshd and the inventory's address/key (see `overlay-tui status`)")]
    return [row("ssh", "ok", [], f"every node answers over SSH ({len(facts)})")]


async def check_docker_version(ctx: DoctorContext) -> list[DoctorCheck]:
    got = await asyncio.gather(*(ctx.docker_info(n) for n in ctx.nodes), return_exceptions=True)
    evidence, bad, statuses, fixes = [], [], [], set()
    for n, info in zip(ctx.nodes, got):
        if isinstance(info, BaseException):
            evidence.append(f"{n}: docker info -> {info or 'no answer within ' + str(NODE_TIMEOUT) + ' s'}")
            statuses.append("warn")
            bad.append(n)
            continue
        version = info.get("ServerVersion")
        status, summary, fix = parse.docker_verdict(version)
        evidence.append(f"{n}: docker info -> ServerVersion {version}, ClusterStore {info.get('ClusterStore') or '-'}")
        statuses.append(status)
        if status != "ok":
            bad.append(n)
            fixes.add(fix or "start dockerd on the node")
    status = worst(statuses)
    summary = ("Docker is 20.10 or older on every node (the classic --cluster-store exists)" if status == "ok" else
               f"Docker cannot run the classic overlay on {', '.join(bad)}")
    return [row("versions.docker", status, bad, summary, evidence, "; ".join(sorted(fixes)))]


async def check_etcd_version(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, failing, statuses, fixes = _skipped(bad), [], [], set()
    cluster = await ctx.etcd_cluster()
    running = {m.name: m.version for m in (cluster.members if cluster else []) if m.version}
    checked = 0
    for n, f in facts.items():
        version = running.get(n) or parse.etcd_version(f.first("etcdversion"))
        if not version:
            continue
        checked += 1
        v = parse.version_tuple(version)
        too_new = v is not None and v[:2] >= (3, 6)
        evidence.append(f"{n}: etcd --version -> etcd Version: {version}")
        statuses.append("fail" if too_new else "ok")
        if too_new:
            failing.append(n)
            fixes.add("install etcd 3.5 or 3.4 (Debian 12's etcd-server 3.4.23): 3.6 removed the v2 API Docker's store needs")
    if not checked:
        return [row("versions.etcd", "warn", [], "no etcd is installed on the checked nodes", evidence,
                    "apt-get install etcd-server (3.4) on the nodes that will run members")]
    status = worst(statuses)
    return [row("versions.etcd", status, failing, "etcd is 3.5 or older (it has the v2 API)" if status == "ok"
                else f"etcd on {', '.join(failing)} has no v2 API", evidence, "; ".join(sorted(fixes)))]


async def check_python(ctx: DoctorContext) -> list[DoctorCheck]:
    versions: dict[str, str | None] = {}
    for pkg in parse.PYTHON_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    pure = os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") == "python"
    status, problems, fix = parse.python_verdict(versions, pure)
    evidence = ["this machine: importlib.metadata -> " + ", ".join(f"{k} {v or 'missing'}" for k, v in versions.items())]
    if pure:
        evidence.append("this machine: PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
    return [row("versions.python", status, [], "the console's Python packages work together" if status == "ok"
                else "; ".join(problems), evidence, fix)]


async def check_hostnames(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable(ctx.all_nodes)
    names = {n: f.hostname for n, f in facts.items()}
    dups = {h: ns for h, ns in parse.duplicate_hostnames(names).items() if set(ns) & set(ctx.nodes)}
    evidence = [f"{n}: hostname -> {h}" for n, h in names.items()] + _skipped(bad)
    if not dups:
        return [row("hostnames", "ok", [], "every node has its own hostname", evidence)]
    nodes = sorted({n for ns in dups.values() for n in ns})
    text = "; ".join(f"{', '.join(ns)} are all named {h!r}" for h, ns in dups.items())
    return [row("hostnames", "fail", nodes, f"duplicate hostnames: {text}; serf names members by hostname and "
                "collapses them into one node", evidence,
                "give each node its own name: `hostnamectl set-hostname NEWNAME` (then restart dockerd)")]


async def check_ports(ctx: DoctorContext) -> list[DoctorCheck]:
    probe, pairs = await ctx.ports()
    out = []
    for proto, port in PORTS:
        cid = f"ports.{proto}{port}"
        blocked = [(s, d) for (s, d, p, pt), n in probe.counts.items() if (p, pt) == (proto, port) and n == 0]
        passed = [(s, d) for (s, d, p, pt), n in probe.counts.items() if (p, pt) == (proto, port) and n > 0]
        evidence = [f"{s} -> {d}: {proto}/{port} {'arrived' if (s, d) in passed else 'NOT counted'} on {d}"
                    for s, d in pairs if (s, d) in passed or (s, d) in blocked]
        evidence += [e for d in sorted({d for _, d in blocked}) for e in probe.evidence.get(d, [])
                     if f"{proto}/{port}" in e]
        evidence += list(probe.errors.values())
        what = "VXLAN data" if port == 4789 else "serf gossip"
        if blocked:
            nodes = sorted({n for pair in blocked for n in pair})
            out.append(row(cid, "fail", nodes, f"{proto.upper()} {port} ({what}) is dropped on "
                           + ", ".join(f"{s} -> {d}" for s, d in blocked), evidence,
                           f"allow {proto.upper()} {port} between the nodes' underlay addresses in every firewall and "
                           f"security group on the path, e.g. on the receiver `iptables -I INPUT -p {proto} --dport {port} "
                           "-s PEER_IP -j ACCEPT` (NSX and some clouds block 4789: pick another VXLAN port there)"))
        elif probe.errors and not passed:
            out.append(row(cid, "warn", sorted({k.split('->')[0] for k in probe.errors}), f"{proto.upper()} {port} could not be tested", evidence,
                           "the test needs nft and python3 on the nodes, run as root"))
        elif not pairs:
            out.append(row(cid, "ok", [], f"{proto.upper()} {port}: fewer than two reachable nodes, nothing to test"))
        else:
            status = "warn" if probe.errors else "ok"
            out.append(row(cid, status, sorted({k.split('->')[0] for k in probe.errors}), f"{proto.upper()} {port} ({what}) arrives on every "
                           f"tested pair ({len(passed)})", evidence, "see the evidence: some nodes could not be tested"))
    return out


async def check_mtu(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, failing, statuses, fixes = _skipped(bad), [], [], []
    for n, f in facts.items():
        iface = f.iface or parse.interface_of(f.lines("addrs"), f.ip) or "?"
        mtu = parse.link_mtu(f.lines("links"), iface)
        status, summary, fix = parse.mtu_verdict(mtu, iface)
        evidence.append(f"{n}: ip -o link show {iface} -> mtu {mtu}")
        statuses.append(status)
        if status != "ok":
            failing.append(n)
            fixes.append(f"{n}: {fix}")
    status = worst(statuses)
    return [row("mtu.underlay", status, failing, f"every underlay link has mtu >= {parse.UNDERLAY_MTU}" if status == "ok"
                else f"the underlay MTU is under {parse.UNDERLAY_MTU} on {', '.join(failing)}: 1450-byte overlay "
                "frames + 50 bytes of VXLAN do not fit", evidence, "; ".join(fixes))]


async def check_path_mtu(ctx: DoctorContext) -> list[DoctorCheck]:
    got, errors, commands = await ctx.pmtu()
    evidence = [f"{s}: `{cmd}`" for s, cmd in commands.items()]
    small, down = [], []
    for (s, d), size in sorted(got.items()):
        if size == "down":
            down.append((s, d))
            evidence.append(f"{s} -> {d}: even a plain ping gets no answer")
        elif size is None or (isinstance(size, int) and size < parse.PMTU_SIZES[0]):
            small.append((s, d))
            path = "under 1000" if size is None else str(size + parse.ICMP_IP_HEADERS)
            evidence.append(f"{s} -> {d}: largest DF ping -s {size} passes: path MTU {path}")
        else:
            evidence.append(f"{s} -> {d}: ping -M do -s {size} passes: path MTU >= {parse.UNDERLAY_MTU}")
    evidence += [f"{n}: {e}" for n, e in errors.items()]
    if small:
        nodes = sorted({n for p in small for n in p})
        return [row("mtu.path", "fail", nodes, "the path MTU is under 1500 between " + ", ".join(f"{s} -> {d}" for s, d in small)
                    + ": overlay frames of 1450 bytes are dropped (DF) or fragmented", evidence,
                    "raise the MTU of every link on the path to 1500 (`ip link set dev IF mtu 1500`), or create the "
                    "overlay with `--opt com.docker.network.driver.mtu=<path MTU - 50>`")]
    if down or errors:
        nodes = sorted({n for p in down for n in p} | set(errors))
        return [row("mtu.path", "warn", nodes, "the path MTU could not be measured between " +
                    ", ".join(f"{s} -> {d}" for s, d in down) if down else "the path MTU could not be measured",
                    evidence, "check that ICMP echo is allowed between the nodes' underlay addresses")]
    return [row("mtu.path", "ok", [], f"every tested path carries {parse.UNDERLAY_MTU}-byte packets with DF set "
                f"({len(got)} pairs)", evidence)]


async def check_vxlan_module(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, missing = _skipped(bad), []
    for n, f in facts.items():
        state = parse.modules(f.lines("modules")).get("vxlan", "missing")
        evidence.append(f"{n}: /sys/module/vxlan or modprobe -n vxlan -> {state}")
        if state == "missing":
            missing.append(n)
    if missing:
        return [row("kernel.vxlan", "fail", missing, f"the vxlan kernel module is missing on {', '.join(missing)}",
                    evidence, "install the kernel's extra modules (e.g. `apt-get install linux-modules-extra-$(uname -r)`) "
                    "and `modprobe vxlan`")]
    return [row("kernel.vxlan", "ok", [], "the vxlan module is loaded or loadable on every node", evidence)]


async def check_esp(ctx: DoctorContext) -> list[DoctorCheck]:
    async def encrypted(node: str) -> list[str]:
        nets = await asyncio.wait_for(ctx.docker.call(node, lambda c: c.api.networks(filters={"driver": "overlay"})),
                                      NODE_TIMEOUT)
        return [n.get("Name", "?") for n in nets if "encrypted" in (n.get("Options") or {})]
    got = await asyncio.gather(*(encrypted(n) for n in ctx.all_nodes), return_exceptions=True)
    names = sorted({name for g in got if isinstance(g, list) for name in g})
    if not names:
        return [row("kernel.esp", "ok", [], "no encrypted overlay network: ESP is not needed",
                    [f"{n}: docker network ls (overlay) -> no `encrypted` option" for n, g in zip(ctx.all_nodes, got)
                     if isinstance(g, list)])]
    facts, bad = await ctx.reachable()
    evidence, missing = _skipped(bad), []
    for n, f in facts.items():
        mods = parse.modules(f.lines("modules"))
        evidence.append(f"{n}: esp4 {mods.get('esp4', '?')}, xfrm_user {mods.get('xfrm_user', '?')}")
        if "missing" in (mods.get("esp4"), mods.get("xfrm_user")):
            missing.append(n)
    if missing:
        return [row("kernel.esp", "fail", missing, f"encrypted overlay network(s) {', '.join(names)} exist but "
                    f"{', '.join(missing)} cannot do IPsec ESP: their traffic is silently dropped", evidence,
                    "load esp4 and xfrm_user (`modprobe esp4 xfrm_user`) or recreate the network without --opt encrypted")]
    return [row("kernel.esp", "ok", [], f"ESP is available for the encrypted network(s) {', '.join(names)}", evidence)]


async def check_clock(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable(ctx.all_nodes)

    async def sample(n: str) -> tuple[float, float]:
        await ctx.pool.connection(n)
        t0 = time.time()
        res = await ctx.pool.run(n, "date +%s.%N", timeout=NODE_TIMEOUT)
        return parse.clock_offset(t0, res.stdout, time.time())
    got = await asyncio.gather(*(sample(n) for n in facts), return_exceptions=True)
    offsets = {n: o for n, o in zip(facts, got) if isinstance(o, tuple)}
    evidence = [f"{n}: date +%s.%N -> offset {o[0]:+.3f} s against this machine (+/- {o[1]:.3f} s)"
                for n, o in offsets.items()] + _skipped(bad)
    status, spread, nodes = parse.skew_verdict(offsets)
    if status == "ok":
        return [row("clock.skew", "ok", [], f"the nodes' clocks agree within {spread:.3f} s", evidence)]
    return [row("clock.skew", status, nodes, f"clocks differ by {spread:.2f} s between {nodes[0]} and {nodes[1]} "
                "(etcd warns from 1 s; leases and TLS need agreeing clocks)", evidence,
                "run an NTP client on every node (`timedatectl set-ntp true`, chrony or systemd-timesyncd)")]


async def check_etcd_members(ctx: DoctorContext) -> list[DoctorCheck]:
    cluster = await ctx.etcd_cluster()
    running = await ctx.etcd_nodes()
    if cluster is None:
        return [row("etcd.members", "fail", [], "no node runs etcd", [], "start the members: `overlay-tui runbook apply`")]
    listed = [m for m in cluster.members if m.id]
    status, summary = parse.member_count_verdict(len(listed))
    evidence = [f"etcd member list -> {m.name or '(unstarted)'} {m.id} {','.join(m.peer_urls)}" for m in listed]
    evidence.append("pgrep -x etcd -> running on " + (", ".join(running) or "no node"))
    return [row("etcd.members", status, [], summary, evidence,
                "run 3 or 5 members (an odd count): `etcdctl member add` one at a time")]


async def check_etcd_quorum(ctx: DoctorContext) -> list[DoctorCheck]:
    cluster = await ctx.etcd_cluster()
    if cluster is None:
        return [row("etcd.quorum", "fail", [], "no node runs etcd: Docker's classic store has no cluster", [],
                    "start the members: `overlay-tui runbook apply`")]
    evidence = [f"etcd status -> {ln}" for ln in cluster.summary]
    listed = [m for m in cluster.members if m.id]
    healthy = [m for m in listed if m.healthy]
    quorum = len(listed) // 2 + 1 if listed else 1
    down = [m.name for m in cluster.members if not m.healthy]
    if not listed:
        return [row("etcd.quorum", "fail", down, "no etcd member answers", evidence,
                    "start etcd on its nodes; a stopped member's reason is the last line of /var/log/etcd.log")]
    if len(healthy) < quorum:
        return [row("etcd.quorum", "fail", down, f"etcd has no quorum: {len(healthy)} of {len(listed)} members "
                    f"answer, {quorum} are needed; every network change and listing through the store stalls",
                    evidence, "bring members back until a majority answers (their log: /var/log/etcd.log)")]
    if not any(m.leader for m in listed):
        return [row("etcd.quorum", "warn", [], "etcd has no leader right now: a leader election is in progress",
                    evidence, "wait a few seconds; if it goes on, check the members' network and clocks")]
    if down:
        return [row("etcd.quorum", "warn", down, f"etcd has quorum but {', '.join(down)} does not answer", evidence,
                    "restart the missing member (its log: /var/log/etcd.log)")]
    return [row("etcd.quorum", "ok", [], f"all {len(listed)} etcd members answer, with a leader", evidence)]


def _metrics(url: str, timeout: float, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
        return resp.read().decode(errors="replace")


async def check_etcd_leader_changes(ctx: DoctorContext) -> list[DoctorCheck]:
    nodes = [n for n in await ctx.etcd_nodes() if n in ctx.nodes]
    ips = await ctx.ips()
    port = ctx.inventory.cluster.etcd_client_port
    evidence, noisy = [], []
    tls = await ctx.etcd_tls()
    for n in nodes:
        ep = Endpoint(via=n, host=ips[n], port=port, tls=tls.get(n, False))
        try:
            host, lport = await ctx.reader.local_address(ep)
            context = ctx.reader.ssl_for(ep)          # etcd over TLS: the operator's client certificate
            scheme = "https" if ep.tls else "http"
            text = await asyncio.to_thread(_metrics, f"{scheme}://{host}:{lport}/metrics", 3.0, context)
        except (OverlayError, OSError, urllib.error.URLError) as e:
            evidence.append(f"{n}: GET {ep.url}/metrics -> {e} (TLS or not reachable: not counted)")
            continue
        changes = parse.metric(text, "etcd_server_leader_changes_seen_total")
        has_leader = parse.metric(text, "etcd_server_has_leader")
        evidence.append(f"{n}: GET {ep.url}/metrics -> etcd_server_leader_changes_seen_total {changes}, "
                        f"etcd_server_has_leader {has_leader}")
        if (changes or 0) > 3 or has_leader == 0:
            noisy.append(n)
    if not nodes:
        return [row("etcd.leader-changes", "ok", [], "no checked node runs etcd", evidence)]
    if noisy:
        return [row("etcd.leader-changes", "warn", noisy, f"leader elections are frequent (or running now) on "
                    f"{', '.join(noisy)}", evidence, "elections come from lost heartbeats: check the underlay "
                    "between members, disk latency under /var/lib/etcd, and CPU starvation")]
    return [row("etcd.leader-changes", "ok", [], "the etcd leader has been stable", evidence)]


async def check_etcd_quota(ctx: DoctorContext) -> list[DoctorCheck]:
    cluster = await ctx.etcd_cluster()
    facts, _ = await ctx.reachable(ctx.all_nodes)
    evidence, bad, statuses = [], [], []
    for m in (cluster.members if cluster else []):
        if m.db_size is None or m.name not in facts:
            continue
        quota = parse.parse_size(facts[m.name].etcd_flags.get("quota-backend-bytes")) or parse.DEFAULT_QUOTA
        status, text = parse.quota_verdict(m.db_size, quota)
        evidence.append(f"{m.name}: etcd status dbSize {m.db_size}, --quota-backend-bytes {quota}: {text}")
        statuses.append(status)
        if status != "ok":
            bad.append(m.name)
    status = worst(statuses)
    return [row("etcd.db-quota", status, bad, "every etcd db is well under its quota" if status == "ok"
                else f"etcd's db is near its quota on {', '.join(bad)}", evidence,
                "compact and defragment: `etcdctl compact $(etcdctl endpoint status -w json | ...revision)`, "
                "`etcdctl defrag`, `etcdctl alarm disarm`; or raise --quota-backend-bytes")]


async def check_etcd_v2(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, failing, statuses = _skipped(bad), [], []
    cluster = await ctx.etcd_cluster()
    running = {m.name: m.version for m in (cluster.members if cluster else []) if m.version}
    for n, f in facts.items():
        if not f.runs_etcd:
            continue
        flags = f.etcd_flags
        version = running.get(n) or parse.etcd_version(f.first("etcdversion"))
        status, summary, fix = parse.etcd_v2_verdict(version, flags)
        evidence.append(f"{n}: /proc/$(pgrep -x etcd)/cmdline -> --enable-v2={flags.get('enable-v2', '(unset)')}")
        statuses.append(status)
        if status != "ok":
            failing.append(n)
    if not statuses:
        return [row("etcd.v2", "ok", [], "no checked node runs etcd", evidence)]
    status = worst(statuses)
    return [row("etcd.v2", status, failing, "every running etcd serves the v2 API Docker's classic store uses"
                if status == "ok" else f"etcd on {', '.join(failing)} does not serve the v2 API", evidence,
                "restart etcd with --enable-v2=true (etcd 3.4/3.5; 3.6 has no v2)")]


async def check_etcd_disk(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, failing, statuses = _skipped(bad), [], []
    for n, f in facts.items():
        if not f.runs_etcd:
            continue
        data_dir = f.etcd_flags.get("data-dir") or ctx.inventory.cluster.etcd_data_dir
        parent = os.path.dirname(data_dir.rstrip("/")) or "/"
        res = await ctx.pool.run(n, f"df -P {shlex.quote(data_dir)} 2>/dev/null || df -P {shlex.quote(parent)}",
                                 timeout=NODE_TIMEOUT)
        use = parse.parse_df(res.stdout)
        if use is None:
            evidence.append(f"{n}: df -P {data_dir} -> {res.stdout.strip()[:120]}")
            statuses.append("warn")
            continue
        status = parse.disk_verdict(use)
        evidence.append(f"{n}: df -P {data_dir} -> {use.used_pct}% used, {use.avail_kb // 1024} MiB free on {use.mount}")
        statuses.append(status)
        if status != "ok":
            failing.append(n)
    if not statuses:
        return [row("etcd.disk", "ok", [], "no checked node runs etcd", evidence)]
    status = worst(statuses)
    return [row("etcd.disk", status, failing, "every etcd data dir has room" if status == "ok"
                else f"the disk under etcd's data dir is (nearly) full on {', '.join(failing)}: etcd dies with "
                "'no space left on device'", evidence, "free space on that filesystem (or move --data-dir), then restart etcd")]


async def check_docker_tcp(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, open_nodes = _skipped(bad), []
    for n, f in facts.items():
        listeners = parse.tcp_listeners(f.lines("listen"), (2375, 2376))
        tls = parse.docker_tls(f.dockerd_argv)
        plain = [a for a in listeners if a.endswith(":2375") or not tls]
        evidence.append(f"{n}: ss -ltn -> {', '.join(listeners) or 'nothing on 2375/2376'}"
                        + (" (dockerd has --tlsverify)" if tls else ""))
        if plain:
            open_nodes.append(n)
    if open_nodes:
        return [row("docker.tcp", "fail", open_nodes, f"something listens on TCP 2375/2376 without TLS on "
                    f"{', '.join(open_nodes)}: anyone on the network can run containers as root there", evidence,
                    "remove `-H tcp://0.0.0.0:2375` from dockerd (the overlay does not need it: overlay-tui uses "
                    "the unix socket over SSH), or require TLS with --tlsverify on 2376")]
    return [row("docker.tcp", "ok", [], "no unauthenticated Docker TCP socket", evidence)]


async def check_etcd_plaintext(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, open_nodes, anonymous = _skipped(bad), [], []
    for n, f in facts.items():
        if not f.runs_etcd:
            continue
        flags = f.etcd_flags
        urls = parse.plaintext_urls(flags.get("listen-client-urls", "http://localhost:2379"))
        peers = parse.plaintext_urls(flags.get("listen-peer-urls", ""))
        auth = flags.get("client-cert-auth", "").lower() == "true"
        evidence.append(f"{n}: etcd --listen-client-urls {flags.get('listen-client-urls', '(default)')} "
                        f"--listen-peer-urls {flags.get('listen-peer-urls', '(default)')}"
                        + (" --client-cert-auth" if auth else ""))
        if urls or peers:
            open_nodes.append(n)
        elif "https://" in flags.get("listen-client-urls", "") and not auth:
            anonymous.append(n)
    if open_nodes:
        return [row("etcd.plaintext", "warn", open_nodes, f"the store is open to the underlay on {', '.join(open_nodes)}: "
                    "etcd serves plain HTTP beyond loopback, so anyone there can read and rewrite the overlay's state",
                    evidence, "serve clients and peers over TLS (--cert-file/--key-file, --client-cert-auth, "
                    "--peer-*), or keep the underlay closed to anyone but the nodes")]
    if anonymous:
        return [row("etcd.plaintext", "warn", anonymous, f"etcd on {', '.join(anonymous)} serves TLS but asks no client "
                    "certificate: anyone on the underlay can still read and rewrite the store", evidence,
                    "add --client-cert-auth=true and --trusted-ca-file (and give Docker and overlay-tui client certs)")]
    return [row("etcd.plaintext", "ok", [], "no etcd serves plain HTTP beyond loopback", evidence)]


async def check_forward(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, blocked_nodes, details = _skipped(bad), [], []
    for n, f in facts.items():
        brs = parse.bridges(f.lines("bridges"))
        policy, blocked = parse.forward_blocked_bridges(f.lines("forward"), brs)
        evidence.append(f"{n}: iptables -S FORWARD -> -P FORWARD {policy or '?'}; bridges {', '.join(brs) or 'none'}"
                        + (f"; no ACCEPT for {', '.join(blocked)}" if blocked else ""))
        if blocked:
            blocked_nodes.append(n)
            details.append(f"{n}: {', '.join(blocked)}")
    if blocked_nodes:
        return [row("iptables.forward", "warn", blocked_nodes, "the FORWARD policy is DROP and no rule accepts "
                    "traffic of bridge(s) " + "; ".join(details), evidence,
                    "accept the bridge's traffic, e.g. `iptables -I DOCKER-USER -i BRIDGE -j ACCEPT` and "
                    "`-o BRIDGE -j ACCEPT` (or let Docker manage it: restart dockerd)")]
    return [row("iptables.forward", "ok", [], "no bridge is cut off by a FORWARD DROP policy", evidence)]


async def check_vmxnet3(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable()
    evidence, risky = _skipped(bad), []
    for n, f in facts.items():
        driver = f.driver or "unknown"
        evidence.append(f"{n}: driver of {f.iface or '?'} -> {driver}")
        if driver == "vmxnet3":
            on = parse.offload_on("\n".join(f.lines("offload")))
            evidence.append(f"{n}: ethtool -k {f.iface} -> " + (", ".join(f"{x}: on" for x in on) or "checksum offload off"))
            if on:
                risky.append(n)
    if risky:
        return [row("nic.vmxnet3", "warn", risky, f"vmxnet3 NIC(s) with checksum offload on {', '.join(risky)}: "
                    "VXLAN packets can leave with bad checksums and be dropped (moby#41775)", evidence,
                    "`ethtool -K IF tx-checksum-ip-generic off` (persist it in the interface's config)")]
    return [row("nic.vmxnet3", "ok", [], "no vmxnet3 NIC with checksum offload on the underlay", evidence)]


async def check_gossip(ctx: DoctorContext) -> list[DoctorCheck]:
    facts, bad = await ctx.reachable(ctx.all_nodes)
    ips = await ctx.ips()
    now = datetime.now(UTC)
    evidence, lost, last_join = _skipped(bad), [], None
    for n in ctx.nodes:
        f = facts.get(n)
        if f is None:
            continue
        peers = parse.serf_peers(f.lines("serf"))
        if not peers:
            evidence.append(f"{n}: dockerd log -> no serf membership event (no overlay network in use yet?)")
            continue
        for other in ctx.all_nodes:
            if other == n or other not in facts:
                continue
            p = peers.get(ips.get(other, ""))
            if p is None:
                evidence.append(f"{n}: dockerd log -> no serf event for {other} ({ips.get(other)})")
                continue
            ago = (now - p.at).total_seconds()
            evidence.append(f"{n}: dockerd log -> serf: {p.event}: {p.name} {p.address} ({ago:.0f} s ago)")
            if p.event != "EventMemberJoin":
                lost.append((n, other, p.event))
            elif last_join is None or p.at > last_join:
                last_join = p.at
    if lost:
        nodes = sorted({x for a, b, _ in lost for x in (a, b)})
        return [row("gossip.converged", "fail", nodes, "overlay peers are out of the gossip: " +
                    ", ".join(f"{a} sees {b} {ev.removeprefix('EventMember').lower()}" for a, b, ev in lost),
                    evidence, "check UDP/TCP 7946 between them (ports.* checks) and that dockerd runs on the peer")]
    if last_join is None:
        return [row("gossip.converged", "ok", [], "no overlay gossip yet (no node has joined a peer)", evidence)]
    ago = (now - last_join).total_seconds()
    return [row("gossip.converged", "ok", [], f"every overlay peer is in the gossip; the last join was {ago:.0f} s ago",
                evidence)]


Check = Callable[[DoctorContext], Awaitable[list[DoctorCheck]]]

#: check id -> (the ids it reports, its function). Ids a function reports are what `--check` selects.
CHECKS: list[tuple[tuple[str, ...], Check]] = [
    (("ssh",), check_ssh),
    (("versions.docker",), check_docker_version),
    (("versions.etcd",), check_etcd_version),
    (("versions.python",), check_python),
    (("hostnames",), check_hostnames),
    (("ports.udp4789", "ports.udp7946", "ports.tcp7946"), check_ports),
    (("mtu.underlay",), check_mtu),
    (("mtu.path",), check_path_mtu),
    (("kernel.vxlan",), check_vxlan_module),
    (("clock.skew",), check_clock),
    (("etcd.members",), check_etcd_members),
    (("etcd.quorum",), check_etcd_quorum),
    (("etcd.leader-changes",), check_etcd_leader_changes),
    (("etcd.db-quota",), check_etcd_quota),
    (("etcd.v2",), check_etcd_v2),
    (("etcd.disk",), check_etcd_disk),
    (("docker.tcp",), check_docker_tcp),
    (("etcd.plaintext",), check_etcd_plaintext),
    (("kernel.esp",), check_esp),
    (("iptables.forward",), check_forward),
    (("nic.vmxnet3",), check_vmxnet3),
    (("gossip.converged",), check_gossip),
]

__all__ = ["CHECKS", "RUNBOOK_CHECKS", "DoctorContext"]
