"""Point each node's Docker at the etcd cluster: the classic store (cluster-store, cluster-advertise).

Per node: check the engine still has the classic store (Docker <= 20.10) and is not in a swarm
(the two exclude each other), merge
``cluster-store=etcd://<ip>:2379`` and ``cluster-advertise=<ip>:2375`` into
/etc/docker/daemon.json (every other key kept; the original saved once as
daemon.json.overlay-tui.bak), restart Docker the way the host runs it (systemd where present,
else stop the dockerd of /var/run/docker.pid and start it again detached with the same
arguments), and wait until the daemon answers with the store set. A node already configured and
running that way is left alone. No TCP listener is added: cluster-advertise only names the address.

With etcd over TLS (``[cluster] etcd_tls``, the default) daemon.json also gets ``cluster-store-opts``
``kv.cacertfile`` / ``kv.certfile`` / ``kv.keyfile``: the CA and the node's client certificate that
the etcd step installed in /etc/etcd/pki (dockerd then logs "Initializing KV with TLS"). With
``etcd_tls = false`` those three keys are removed again.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.dockerd.clients import DockerNodes
from core.errors import DockerError, OverlayError, UsageError, raise_gathered
from core.etcd.tls import CA, CLIENT_CRT, CLIENT_KEY
from core.nodes.address import UnderlayAddresses

DAEMON_JSON = "/etc/docker/daemon.json"
BACKUP = DAEMON_JSON + ".overlay-tui.bak"
PIDFILE = "/var/run/docker.pid"
DOCKERD_LOG = "/var/log/dockerd.log"
ADVERTISE_PORT = 2375            # only advertised (names the node); dockerd does not listen on it
STORE_KEYS = ("cluster-store", "cluster-advertise")
STORE_OPTS = "cluster-store-opts"
TLS_OPTS = {"kv.cacertfile": CA, "kv.certfile": CLIENT_CRT, "kv.keyfile": CLIENT_KEY}
# The arguments of the dockerd we last started (one per line), so a dead one starts again the same way.
ARGV_FILE = "/etc/docker/overlay-tui.dockerd-argv"
PREV = DAEMON_JSON + ".overlay-tui.prev"        # the file as it was before this apply (for the rollback)
ABSENT = DAEMON_JSON + ".overlay-tui.absent"    # marks that there was no daemon.json before this apply

# daemon.json from stdin: never through a symlink, the old one kept (once as BACKUP, and as PREV for a
# rollback), the new one written beside it with the old one's mode and owner (0644 root when new), fsynced,
# then renamed over it, and the directory fsynced.
_F, _T = shlex.quote(DAEMON_JSON), shlex.quote(DAEMON_JSON + ".overlay-tui.tmp")
WRITE_SCRIPT = (
    f"set -e; umask 077; mkdir -p /etc/docker; "
    f"if [ -L {_F} ]; then echo '{DAEMON_JSON} is a symbolic link: overlay-tui does not write through links; "
    f"replace it with the file it points to' >&2; exit 3; fi; "
    f"if [ -e {_F} ] && [ ! -e {shlex.quote(BACKUP)} ]; then cp -p {_F} {shlex.quote(BACKUP)}; fi; "
    f"rm -f {shlex.quote(PREV)} {shlex.quote(ABSENT)}; "
    f"if [ -e {_F} ]; then cp -p {_F} {shlex.quote(PREV)}; else : > {shlex.quote(ABSENT)}; fi; "
    f"rm -f {_T}; cat > {_T}; "
    f"if [ -e {_F} ]; then chown --reference={_F} {_T}; chmod --reference={_F} {_T}; "
    f"else chown 0:0 {_T}; chmod 644 {_T}; fi; "
    f"sync {_T} 2>/dev/null || sync; mv -f {_T} {_F}; sync /etc/docker 2>/dev/null || sync"
)
# Put back the daemon.json of before this apply (or remove the one it created).
ROLLBACK_SCRIPT = (
    f"set -e; if [ -e {shlex.quote(PREV)} ]; then mv -f {shlex.quote(PREV)} {_F}; "
    f"elif [ -e {shlex.quote(ABSENT)} ]; then rm -f {_F} {shlex.quote(ABSENT)}; fi; sync"
)

# The overlay's gossip as the running dockerd sees it. Docker 20.10's classic overlay keeps its peers in a
# serf cluster (port 7946) and logs serf's member events ("serf: EventMemberJoin: NAME ADDR", ...Leave,
# ...Failed, ...Reap, ...Update). From the log's end back to the last "Starting up" (this dockerd's start),
# oldest first: "gossip-log" (that start was found), then one "gossip=EVENT ADDR" line per event. At most
# the log's last GOSSIP_LOG_LINES lines are read: a dockerd started longer ago than that cannot say.
GOSSIP_LOG_LINES = 50000
GOSSIP_SCRIPT = (
    "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 "
    "&& systemctl cat docker.service >/dev/null 2>&1; then journalctl -u docker -o cat -r --no-pager 2>/dev/null; "
    f"else tac {DOCKERD_LOG} 2>/dev/null; fi | head -n {GOSSIP_LOG_LINES} | sed '/msg=\"Starting up\"/q' "
    "| grep -o -e 'msg=\"Starting up\"' -e 'serf: EventMember[A-Za-z]*: [^ ]* [0-9A-Fa-f.:]*' | tac "
    "| sed -e 's/^msg=\"Starting up\"$/gossip-log/' -e 's/^serf: EventMember\\([A-Za-z]*\\): [^ ]* /gossip=\\1 /'; "
)

# One round trip: how Docker runs on the node, its daemon.json, the running dockerd's arguments and gossip.
FACTS_SCRIPT = (
    "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 "
    "&& systemctl cat docker.service >/dev/null 2>&1; then echo systemd; else echo direct; fi; "
    f"pid=$(cat {PIDFILE} 2>/dev/null); echo \"pid=$pid\"; "
    # the pidfile's process is relaunched with its arguments, as root: only if it really is dockerd
    "[ -n \"$pid\" ] && [ \"$(cat /proc/$pid/comm 2>/dev/null)\" = dockerd ] && echo alive=yes "
    "&& tr '\\0' '\\n' < /proc/$pid/cmdline | sed 's/^/arg=/'; "
    f"[ -r {ARGV_FILE} ] && sed 's/^/saved=/' {ARGV_FILE}; "
    + GOSSIP_SCRIPT +
    f"echo '--daemon.json--'; cat {DAEMON_JSON} 2>/dev/null; true"
)


@dataclass
class NodeDockerFacts:
    """What one node's Docker looks like now: engine, running store, service manager, config."""

    node: str
    version: str
    cluster_store: str
    cluster_advertise: str
    systemd: bool
    pid: int | None
    args: list[str] = field(default_factory=list)
    daemon_json: dict | None = None          # None: the file does not exist
    swarm: str = ""                          # Swarm.LocalNodeState: "inactive", "active", ...
    running: bool = True                     # False: no dockerd runs (SSH answers, the daemon does not)
    saved_args: list[str] = field(default_factory=list)   # how we last started it (ARGV_FILE)
    gossip: frozenset[str] | None = None     # addresses its overlay gossip knows alive (None: the log can't say)


@dataclass
class DockerStoreChange:
    """What docker_store_apply does (or did) on one node; ``command`` is for plans and logs."""

    node: str
    action: str                  # "none", "configure" (write daemon.json + restart), "restart", "start"
                                 # (dockerd is dead: start it again as it ran), "unknown"
    command: str
    reason: str = ""
    want_store: str = ""
    want_advertise: str = ""
    seconds: float | None = None
    want_opts: dict | None = None    # cluster-store-opts wanted in daemon.json (None: no such key)
    facts: NodeDockerFacts | None = field(default=None, repr=False, compare=False)


def engine_supports_classic(node: str, version: str) -> None:
    """Raise DockerError for Docker >= 23.0, which removed --cluster-store."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return
    if major >= 23:
        raise DockerError(
            f"{node}: Docker {version} no longer supports the classic etcd cluster store (removed in 23.0); "
            "the classic recipe needs Docker <= 20.10 on every node. On newer engines use swarm mode "
            "(`docker swarm init` / `docker swarm join`) for overlay networks instead; nothing was changed")


def gossip_view(lines: list[str]) -> frozenset[str] | None:
    """The addresses a dockerd's gossip knows alive, from :data:`GOSSIP_SCRIPT`'s lines (None: no start line,
    so the log cannot say: rotated away, or not readable)."""
    if "gossip-log" not in lines:
        return None
    alive: set[str] = set()
    for ln in lines[lines.index("gossip-log") + 1:]:
        if not ln.startswith("gossip="):
            continue
        event, _, addr = ln[7:].partition(" ")
        if event in ("Join", "Update"):
            alive.add(addr.strip())
        else:                                    # Leave, Failed, Reap
            alive.discard(addr.strip())
    return frozenset(alive)


def gossip_outsiders(views: dict[str, frozenset[str] | None], ips: dict[str, str]) -> dict[str, str]:
    """Which nodes of ``views`` are out of the overlay's gossip, each with why (empty: the gossip is whole).

    ``views``: node -> the addresses its dockerd's gossip knows alive (None: its log cannot say). Only the
    nodes of ``views`` count. The main cluster is the largest set of them some node sees (ties: the set most
    nodes see); a node outside it, or one that does not see all of it, is out.
    """
    by_ip = {ip: n for n, ip in ips.items()}
    seen = {n: frozenset(by_ip[a] for a in v if a in by_ip and by_ip[a] in views)
            for n, v in views.items() if v is not None}
    if not seen:
        return {}
    main = max(seen.values(), key=lambda s: (len(s), sum(v == s for v in seen.values()), sorted(s, reverse=True)))
    out = {}
    for n in views:
        v = seen.get(n)
        knows = f"it knows {len(v)} of {len(views)} node(s)" if v is not None else "its log does not say whom it knows"
        if n not in main:
            out[n] = (f"out of the overlay's gossip: {', '.join(sorted(main)) or 'no node'} "
                      f"{'does' if len(main) == 1 else 'do'} not know it ({knows})")
        elif v is not None and not main <= v:
            out[n] = f"out of the overlay's gossip: {knows}, not {', '.join(sorted(main - v))}"
    return out


def _parse_facts(node: str, stdout: str, version: str, info: dict) -> NodeDockerFacts:
    head, _, body = stdout.partition("--daemon.json--\n")
    lines = head.splitlines()
    pid = next((ln[4:] for ln in lines if ln.startswith("pid=")), "")
    facts = NodeDockerFacts(node=node, version=version, cluster_store=info.get("ClusterStore") or "",
                            cluster_advertise=info.get("ClusterAdvertise") or "",
                            systemd=bool(lines) and lines[0] == "systemd", pid=int(pid) if pid.isdigit() else None,
                            args=[ln[4:] for ln in lines if ln.startswith("arg=")],
                            swarm=(info.get("Swarm") or {}).get("LocalNodeState", ""),
                            saved_args=[ln[6:] for ln in lines if ln.startswith("saved=")],
                            gossip=gossip_view(lines))
    if body.strip():
        try:
            data = json.loads(body)
        except json.JSONDecodeError as e:
            raise DockerError(f"{node}: {DAEMON_JSON} is not valid JSON ({e}); fix it by hand, "
                              "overlay-tui will not overwrite it") from None
        if not isinstance(data, dict):
            raise DockerError(f"{node}: {DAEMON_JSON} is not a JSON object; fix it by hand")
        facts.daemon_json = data
    return facts


async def node_facts(docker: DockerNodes, pool, node: str) -> NodeDockerFacts:
    """Engine version, running store, service manager and daemon.json of one node (concurrently).

    A node whose SSH answers but whose dockerd does not run gives facts with ``running=False``
    (so the apply starts it again); a dockerd that runs but does not answer stays an error.
    """
    def version_and_info(cl) -> tuple[str, dict]:
        return cl.version().get("Version", ""), cl.info()

    answer, res = await asyncio.gather(docker.call(node, version_and_info),
                                       pool.run(node, FACTS_SCRIPT, check=True), return_exceptions=True)
    if isinstance(res, BaseException):
        raise res
    if isinstance(answer, BaseException):
        if not isinstance(answer, DockerError) or "alive=yes" in res.stdout.splitlines():
            raise answer
        facts = _parse_facts(node, res.stdout, "", {})
        facts.running, facts.pid = False, None
        return facts
    version, info = answer
    return _parse_facts(node, res.stdout, version, info)


def store_opts(have: object, tls: bool) -> dict | None:
    """The cluster-store-opts daemon.json should hold: the TLS files when ``tls``, other keys kept."""
    opts = dict(have) if isinstance(have, dict) else {}
    for k in TLS_OPTS:
        opts.pop(k, None)
    if tls:
        opts.update(TLS_OPTS)
    return opts or None


def restart_args(args: list[str]) -> list[str]:
    """The running dockerd's arguments without store flags (daemon.json carries those now)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if any(a == f"--{k}" for k in STORE_KEYS):
            skip = True
            continue
        if any(a.startswith(f"--{k}=") for k in STORE_KEYS):
            continue
        out.append(a)
    return out or ["dockerd"]


def start_args(facts: NodeDockerFacts) -> list[str]:
    """How dockerd starts again: as it runs now, or (dead) as we last started it, else plain ``dockerd``."""
    return restart_args(facts.args if facts.running else facts.saved_args)


def restart_command(facts: NodeDockerFacts) -> str:
    if facts.systemd:
        return "systemctl restart docker"
    start = f"nohup setsid {shlex.join(start_args(facts))} >> {DOCKERD_LOG} 2>&1 < /dev/null &"
    stop = f"kill {facts.pid} (wait until gone); " if facts.pid else ""
    return stop + start


async def cluster_store_url(addresses: UnderlayAddresses, inventory, node: str, host: str) -> str:
    """A member node's dockerd uses its own etcd; a node without a member (see :mod:`core.etcd.sizing`)
    uses every member's client endpoint, comma-separated (libkv tries them in turn)."""
    from core.etcd.sizing import sizing

    port = inventory.cluster.etcd_client_port
    size = sizing(inventory)
    if size.is_member(node):
        return f"etcd://{host}:{port}"
    ips = await addresses.all(size.members)
    hosts = [f"[{ips[m.name]}]" if ":" in ips[m.name] else ips[m.name] for m in size.members]
    return "etcd://" + ",".join(f"{h}:{port}" for h in hosts)


async def plan_node(docker: DockerNodes, pool, addresses: UnderlayAddresses, inventory, node: str) -> DockerStoreChange:
    """The change one node needs; raises DockerError for an engine without the classic store."""
    ip = await addresses.of(node)
    host = f"[{ip}]" if ":" in ip else ip
    store = await cluster_store_url(addresses, inventory, node, host)
    adv = f"{host}:{ADVERTISE_PORT}"
    facts = await node_facts(docker, pool, node)
    if facts.running:
        engine_supports_classic(node, facts.version)
    if facts.swarm in ("active", "pending"):
        raise DockerError(f"{node}: this Docker is part of a swarm (state {facts.swarm}); swarm mode and the "
                          "classic cluster store exclude each other. Leave the swarm first (`docker swarm leave`, "
                          "with --force on a manager) or keep using swarm mode's overlay; nothing was changed")
    cfg = facts.daemon_json or {}
    opts = store_opts(cfg.get(STORE_OPTS), inventory.cluster.etcd_tls)
    file_ok = (cfg.get("cluster-store") == store and cfg.get("cluster-advertise") == adv
               and cfg.get(STORE_OPTS) == opts)
    running_ok = facts.cluster_store == store and facts.cluster_advertise == adv
    change = DockerStoreChange(node, "none", "", want_store=store, want_advertise=adv, facts=facts, want_opts=opts)
    if file_ok and running_ok:
        change.command = f"nothing to do: dockerd already uses {store}, advertising {adv}"
        change.reason = "already configured"
        return change
    flags = [a for a in facts.args if any(a.split("=")[0] == f"--{k}" for k in STORE_KEYS)]
    if facts.systemd and flags:
        raise DockerError(f"{node}: the docker service starts dockerd with {' '.join(flags)} on its command line, "
                          f"which would clash with the same keys in {DAEMON_JSON}; remove those flags from the "
                          "unit (`systemctl edit docker`) and apply again; nothing was changed")
    restart = restart_command(facts)
    if not facts.running:
        tail = await log_tail(pool, node, facts.systemd)
        last = tail.strip().splitlines()[-1:] or ["(log empty)"]
        change.action = "start" if file_ok else "configure"
        change.reason = f"dockerd is not running (last log line: {last[0][:160]})"
        change.command = restart if file_ok else (
            f"merge {json.dumps({'cluster-store': store, 'cluster-advertise': adv})} into {DAEMON_JSON}; {restart}")
        return change
    if file_ok:
        change.action, change.reason = "restart", f"daemon.json is right but dockerd runs with store {facts.cluster_store or 'none'}"
        change.command = restart
    else:
        change.action, change.reason = "configure", f"dockerd runs with store {facts.cluster_store or 'none'}"
        keys: dict = {"cluster-store": store, "cluster-advertise": adv}
        if opts is not None:
            keys[STORE_OPTS] = opts
        merged = json.dumps(keys)
        change.command = f"merge {merged} into {DAEMON_JSON} (original kept as {BACKUP}); {restart}"
    return change


async def plan(docker: DockerNodes, pool, addresses: UnderlayAddresses, inventory) -> list[DockerStoreChange]:
    """Every node's change; a node that cannot be inspected gets action "unknown" and the reason. A node
    already configured whose dockerd is out of the overlay's gossip gets action "rejoin" (see :func:`apply`)."""
    async def one(name: str) -> DockerStoreChange:
        try:
            return await plan_node(docker, pool, addresses, inventory, name)
        except OverlayError as e:
            return DockerStoreChange(name, "unknown", "merge cluster-store/cluster-advertise into "
                                     f"{DAEMON_JSON}; restart docker", reason=str(e))
    changes = list(await asyncio.gather(*(one(n.name) for n in inventory.nodes)))
    mark_outsiders(changes, await addresses.all(inventory.nodes))
    return changes


REANNOUNCE_COMMAND = ("take a node of the whole gossip out of the store's node list (/docker/nodes) and put it "
                      "back, so a node whose gossip join failed tries again, at it")
REJOIN_COMMAND = (REANNOUNCE_COMMAND + "; if still out: stop dockerd with every other node out of the gossip, take "
                  "their entries out of the store's node list, then start them one at a time, each once the "
                  "previous has joined")


def mark_outsiders(changes: list[DockerStoreChange], ips: dict[str, str]) -> None:
    """Turn the already configured nodes ("none") whose dockerd is out of the gossip into "rejoin"."""
    views = {c.node: c.facts.gossip for c in changes if c.action == "none" and c.facts is not None}
    out = gossip_outsiders(views, ips) if len(views) > 1 else {}
    for c in changes:
        if c.node in out:
            c.action, c.reason, c.command = "rejoin", out[c.node], REJOIN_COMMAND


async def write_daemon_json(pool, node: str, facts: NodeDockerFacts, store: str, adv: str,
                            opts: dict | None = None) -> None:
    """Merge the store keys into daemon.json, keeping every other key; back up the original once."""
    merged = dict(facts.daemon_json or {})
    merged.update({"cluster-store": store, "cluster-advertise": adv})
    merged.pop(STORE_OPTS, None)
    if opts is not None:
        merged[STORE_OPTS] = opts
    await pool.run(node, WRITE_SCRIPT, input=json.dumps(merged, indent=2) + "\n", check=True)


async def dockerd_pid(pool, node: str, pid: int | None) -> int | None:
    """``pid`` if it is a running dockerd; None if it is gone; DockerError if it is some other program
    (a pidfile can be stale, or written by anyone who can write /var/run: never kill what it names blindly)."""
    if not pid:
        return None
    res = await pool.run(node, f"cat /proc/{int(pid)}/comm 2>/dev/null", timeout=10)
    comm = res.stdout.strip()
    if not comm:
        return None
    if comm != "dockerd":
        raise DockerError(f"{node}: {PIDFILE} names pid {pid}, which is `{comm}`, not dockerd; nothing was killed "
                          f"or restarted: stop Docker there yourself and remove the stale {PIDFILE}")
    return int(pid)


async def stop_docker(pool, node: str, facts: NodeDockerFacts) -> None:
    """Stop Docker as the host runs it (systemd, or the pidfile's dockerd, killed only if it is dockerd)."""
    if facts.systemd:
        res = await pool.run(node, "systemctl stop docker", timeout=120)
        if not res.ok:
            raise DockerError(f"{node}: `systemctl stop docker` failed ({(res.stderr or res.stdout).strip()})")
    elif await dockerd_pid(pool, node, facts.pid):
        await pool.kill(node, facts.pid, wait=60)


async def start_docker(pool, node: str, facts: NodeDockerFacts) -> int | None:
    """Start Docker again as it ran (systemd, or the same arguments, detached); the new pid (None under systemd)."""
    if facts.systemd:
        await _systemctl(pool, node, "start")
        return None
    args = start_args(facts)
    # a killed dockerd leaves its pid file: remove it only when the pid in it is gone; remember how we start it
    await pool.run(node, f"pid=$(cat {PIDFILE} 2>/dev/null); if [ -n \"$pid\" ] && ! kill -0 \"$pid\" 2>/dev/null; "
                   f"then rm -f {PIDFILE}; fi; mkdir -p /etc/docker; cat > {ARGV_FILE}",
                   input="\n".join(args) + "\n", check=True)
    return await pool.start_detached(node, shlex.join(args), DOCKERD_LOG)


async def restart_docker(pool, node: str, facts: NodeDockerFacts) -> int | None:
    """Restart Docker as the host runs it: systemd, or stop the pidfile's dockerd and start it again.

    Returns the new dockerd's pid when we started it ourselves (None under systemd).
    """
    if facts.systemd:
        await _systemctl(pool, node, "restart")
        return None
    await stop_docker(pool, node, facts)
    return await start_docker(pool, node, facts)


async def _systemctl(pool, node: str, verb: str) -> None:
    """`systemctl VERB docker`; a failure raises with the journal's last lines."""
    res = await pool.run(node, f"systemctl {verb} docker", timeout=120)
    if not res.ok:
        tail = await log_tail(pool, node, True)
        raise DockerError(f"{node}: `systemctl {verb} docker` failed ({(res.stderr or res.stdout).strip()}); "
                          f"last lines of journalctl -u docker:\n{tail}")


async def rollback_node(docker: DockerNodes, pool, node: str, facts: NodeDockerFacts) -> str:
    """Put ``node`` back as it was before this apply: its daemon.json, and Docker restarted on it.

    Returns a sentence saying what was restored (or what could not be)."""
    try:
        await pool.run(node, ROLLBACK_SCRIPT, check=True, timeout=30)
        if facts.systemd:
            await pool.run(node, "systemctl restart docker", check=True, timeout=120)
            pid = None
        else:
            now = await pool.run(node, f"cat {PIDFILE} 2>/dev/null", timeout=10)
            current = int(now.stdout.strip()) if now.stdout.strip().isdigit() else None
            if await dockerd_pid(pool, node, current):
                await pool.kill(node, current, wait=60)
            pid = await pool.start_detached(node, shlex.join(facts.args or ["dockerd"]), DOCKERD_LOG)
        await wait_for_store(docker, pool, node, facts.cluster_store, facts.systemd, pid)
    except OverlayError as e:
        return f"rolling {node} back failed too: {e}"
    return f"{node} is back on its original daemon.json and Docker (store {facts.cluster_store or 'none'})"


async def log_tail(pool, node: str, systemd: bool) -> str:
    cmd = ("journalctl -u docker -n 12 --no-pager" if systemd else f"tail -n 12 {DOCKERD_LOG}") + " 2>&1"
    try:
        res = await pool.run(node, cmd, timeout=10)
    except OverlayError:
        return "(log not readable)"
    return res.stdout.strip() or "(log empty)"


async def wait_for_store(docker: DockerNodes, pool, node: str, store: str, systemd: bool,
                         pid: int | None = None, timeout: float = 60.0) -> None:
    """Poll the daemon until it answers with ClusterStore == ``store`` ("" for none); a clear error with the log if not.

    With ``pid`` (a dockerd we started), a daemon that exits is reported at once instead of at the timeout.
    """
    await docker.reset(node)
    deadline = time.monotonic() + timeout
    seen = "no answer"
    where = "journalctl -u docker" if systemd else DOCKERD_LOG
    while time.monotonic() < deadline:
        try:
            info = await docker.call(node, lambda cl: cl.info())
            if (info.get("ClusterStore") or "") == store:     # no store: the key is absent
                return
            seen = f"ClusterStore={info.get('ClusterStore') or 'none'}"
        except DockerError as e:
            await docker.reset(node)
            seen = str(e)
            if pid is not None and not (await pool.run(node, f"kill -0 {int(pid)}")).ok:
                tail = await log_tail(pool, node, systemd)
                raise DockerError(f"{node}: dockerd exited right after the restart (nothing listens on its "
                                  f"socket); last lines of {where}:\n{tail}") from None
        await asyncio.sleep(0.25)
    tail = await log_tail(pool, node, systemd)
    raise DockerError(f"{node}: dockerd did not come back with cluster-store {store} within {timeout:g} s "
                      f"(last: {seen}); last lines of {where}:\n{tail}")


async def apply_node(docker: DockerNodes, pool, addresses: UnderlayAddresses, inventory, node: str) -> DockerStoreChange:
    change = await plan_node(docker, pool, addresses, inventory, node)
    if change.action == "none":
        return change
    facts = change.facts
    assert facts is not None
    await _change_node(docker, pool, node, change, facts)
    return change


async def _change_node(docker: DockerNodes, pool, node: str, change: DockerStoreChange,
                       facts: NodeDockerFacts) -> None:
    """Write daemon.json (when it needs it), restart Docker and wait for the store; ``change.seconds`` says how long."""
    t0 = time.monotonic()
    if change.action == "configure":
        await write_daemon_json(pool, node, facts, change.want_store, change.want_advertise, change.want_opts)
    pid = await restart_docker(pool, node, facts)
    await wait_for_store(docker, pool, node, change.want_store, facts.systemd, pid)
    change.seconds = round(time.monotonic() - t0, 2)


# dockerds restarted at once after the first one (see apply); [cluster] docker_restart_wave or
# OVERLAY_TUI_STORE_WAVE set it, 1 is host by host.
WAVE = 4
FIRST_SETTLE = 3.0         # seconds a wave's gossip is given to come out whole before a node is announced again
GOSSIP_SETTLE = 10.0       # seconds the gossip is given to come out whole before its outsiders restart alone
NODES_DIR = "/docker/nodes/"   # Docker's node list in the store (classic discovery)
NODES_TTL = 60             # seconds: the TTL Docker gives its entry there (discovery.ttl's default)
REANNOUNCE_GAP = 1.0       # seconds a re-announced entry stays out, so every dockerd's watch sees it gone
REJOIN_ROUNDS = 2          # rounds of rejoining before the apply gives up on a node (and says so)
RESTARTING = ("configure", "restart", "start")


def restart_wave(inventory, wave: int | None = None) -> int:
    """How many dockerds restart at once after the seed: ``wave``, else $OVERLAY_TUI_STORE_WAVE, else the
    inventory's ``[cluster] docker_restart_wave``."""
    if wave is None:
        env = os.environ.get("OVERLAY_TUI_STORE_WAVE", "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise UsageError(f"OVERLAY_TUI_STORE_WAVE must be a whole number of 1 or more, got {env!r}")
            return int(env)
        wave = inventory.cluster.docker_restart_wave
        if wave < 1:
            raise UsageError(f"{inventory.path}: [cluster] docker_restart_wave must be 1 or more (1: host by host), "
                             f"got {wave}")
    return max(1, wave)


def waves(nodes: list[str], size: int = WAVE, first: str | None = None) -> list[list[str]]:
    """``first`` (default: the first node) alone, then the others ``size`` at a time: ``[[a], [b, c, d, e], ...]``."""
    if not nodes:
        return []
    lead = first if first in nodes else nodes[0]
    rest = [n for n in nodes if n != lead]
    return [[lead]] + [rest[i:i + size] for i in range(0, len(rest), size)]


def gossip_seed(advertise: dict[str, str]) -> str:
    """The node restarted first and alone: the greatest store key (``<ip>:2375`` as a string).

    Restarted alone, it is in the store with its gossip up before any other restarting dockerd looks
    for a node to join, so the first wave always has a running node to join.
    """
    return max(advertise, key=lambda n: advertise[n])


async def gossip_views(pool, nodes: list[str]) -> dict[str, frozenset[str] | None]:
    """Each node's gossip as its running dockerd logged it (None where the log cannot say or SSH fails)."""
    async def one(name: str) -> frozenset[str] | None:
        try:
            res = await pool.run(name, GOSSIP_SCRIPT + "true", timeout=15)
        except OverlayError:
            return None
        return gossip_view(res.stdout.splitlines())
    return dict(zip(nodes, await asyncio.gather(*(one(n) for n in nodes))))


async def settle_gossip(pool, nodes: list[str], ips: dict[str, str], timeout: float | None = None,
                        interval: float = 0.5, waiting_for: set[str] | None = None) -> dict[str, str]:
    """Poll until the gossip among ``nodes`` is whole (empty result) or ``timeout`` (:data:`GOSSIP_SETTLE`);
    then who is out and why. ``waiting_for``: stop as soon as none of these nodes is out (others may still be)."""
    deadline = time.monotonic() + (GOSSIP_SETTLE if timeout is None else timeout)
    while True:
        out = gossip_outsiders(await gossip_views(pool, nodes), ips) if len(nodes) > 1 else {}
        if not out or time.monotonic() >= deadline or (waiting_for is not None and not waiting_for & set(out)):
            return out
        await asyncio.sleep(interval)


def joined_nobody(view: frozenset[str] | None, ip: str) -> bool:
    """A dockerd whose gossip knows no node but itself: its join failed (the node it picked was not listening),
    or its gossip never started (no member event at all since it started)."""
    return view is not None and view <= {ip}


def _store_v2_url(inventory, ip: str) -> str:
    c = inventory.cluster
    return f"{'https' if c.etcd_tls else 'http'}://{f'[{ip}]' if ':' in ip else ip}:{c.etcd_client_port}"


async def _on_a_member(pool, inventory, ips: dict[str, str], script: Callable[[str], str]) -> tuple[str | None, list[str]]:
    """Run ``script(etcdctl)`` (etcdctl's v2 API, endpoint and TLS set) on the first etcd member that runs it
    cleanly: (that member, []) or (None, what went wrong on each)."""
    from core.etcd.sizing import sizing

    c = inventory.cluster
    tls = (f" --ca-file {shlex.quote(CA)} --cert-file {shlex.quote(CLIENT_CRT)} --key-file {shlex.quote(CLIENT_KEY)}"
           if c.etcd_tls else "")
    errors = []
    for member in sizing(inventory).member_names:
        etcdctl = f"ETCDCTL_API=2 etcdctl --endpoints {shlex.quote(_store_v2_url(inventory, ips[member]))}{tls}"
        try:
            res = await pool.run(member, f"command -v etcdctl >/dev/null || exit 9; {script(etcdctl)}", timeout=30)
        except OverlayError as e:
            errors.append(str(e))
            continue
        if res.ok and not res.stderr.strip():
            return member, []
        errors.append(f"{member}: {(res.stderr or 'no etcdctl').strip()[:200]}")
    return None, errors or ["no etcd member"]


async def forget_in_store(pool, inventory, ips: dict[str, str], advertise: list[str]) -> str:
    """Take ``advertise`` entries out of Docker's node list in the store (``/docker/nodes/<ip:port>``), through
    etcdctl's v2 API on the first member that answers. A stopped dockerd's entry lives on until its TTL (60 s);
    a starting dockerd that picks it to join fails, and joins nobody. Returns what was done, for the log."""
    def script(etcdctl: str) -> str:     # an entry already gone is fine; any other failure is said on stderr
        return "; ".join(f"out=$({etcdctl} rm {shlex.quote(NODES_DIR + a)} 2>&1) || case \"$out\" in "
                         "*'Key not found'*) ;; *) printf '%s\\n' \"$out\" >&2;; esac" for a in advertise)
    member, errors = await _on_a_member(pool, inventory, ips, script)
    if member:
        return f"store entries {', '.join(advertise)} removed through {member}"
    return f"store entries {', '.join(advertise)} not removed ({'; '.join(errors)})"


async def reannounce_in_store(pool, inventory, ips: dict[str, str], advertise: str) -> str:
    """Take a running node's entry out of Docker's node list and put it back (as its dockerd does on each
    heartbeat, TTL 60 s): every dockerd sees a node appear and one whose gossip join failed tries again, at
    that node. Docker's classic overlay tries a join only when the list gains a node (libnetwork's
    ``joinOnce``, reset by a failure), so a node whose join went to a wave-mate not listening yet stays alone
    until then. The entry is left out for :data:`REANNOUNCE_GAP` s so every dockerd's watch lists it gone.
    Nodes already in the gossip ignore it (their join was done). Returns what was done, for the log."""
    key = shlex.quote(NODES_DIR + advertise)

    def script(etcdctl: str) -> str:
        return (f"out=$({etcdctl} rm {key} 2>&1) || case \"$out\" in *'Key not found'*) ;; "
                f"*) printf '%s\\n' \"$out\" >&2; exit 1;; esac; sleep {REANNOUNCE_GAP:g}; "
                f"{etcdctl} set --ttl {NODES_TTL} {key} {shlex.quote(advertise)} >/dev/null")
    member, errors = await _on_a_member(pool, inventory, ips, script)
    if member:
        return f"the store announced {advertise} again, through {member}"
    return f"the store could not announce {advertise} again ({'; '.join(errors)})"


async def rejoin(docker: DockerNodes, pool, inventory, ips: dict[str, str], changes: dict[str, DockerStoreChange],
                 out: dict[str, str], inside: list[str]) -> None:
    """Bring the nodes ``out`` into the gossip of the nodes ``inside`` (which run with the store).

    A starting dockerd joins the gossip through one node of the store's node list, picked at random:
    another starting (or stopped) node there can leave it alone or in a cluster of its own. So every
    outsider is stopped first, their entries leave the store's node list, and they start one at a time:
    each sees only nodes of the whole gossip, and the next starts once it has joined.
    """
    names = sorted(out)
    facts = dict(zip(names, await asyncio.gather(*(node_facts(docker, pool, n) for n in names))))
    await asyncio.gather(*(stop_docker(pool, n, facts[n]) for n in names))
    note = await forget_in_store(pool, inventory, ips, [changes[n].want_advertise for n in names])
    members = [n for n in inside if n not in out]
    for n in names:
        t0 = time.monotonic()
        pid = await start_docker(pool, n, facts[n])
        await wait_for_store(docker, pool, n, changes[n].want_store, facts[n].systemd, pid)
        members.append(n)
        left = await settle_gossip(pool, members, ips)
        c = changes[n]
        took = round(time.monotonic() - t0, 2)
        c.seconds = round((c.seconds or 0.0) + took, 2)
        state = "rejoined the gossip" if n not in left else f"still {left[n]}"
        what = f"{out[n]}; restarted alone: {state} ({note})"
        c.reason = f"{c.reason}; {what}" if c.action in RESTARTING else what
        if c.action == "none":
            c.action, c.command = "rejoin", REJOIN_COMMAND


async def bring_in(docker: DockerNodes, pool, inventory, ips: dict[str, str], changes: dict[str, DockerStoreChange],
                   out: dict[str, str], inside: list[str]) -> None:
    """Bring the nodes ``out`` into the gossip of the nodes ``inside``.

    A node whose gossip knows nobody (:func:`joined_nobody`: its join went to a node not listening yet) is
    brought in the cheap way: a node of the whole gossip announced again in the store
    (:func:`reannounce_in_store`), so it joins that node, without a restart. A node that joined only part
    of the gossip (a wave-mate that had not joined the rest yet: it learns the others at memberlist's next
    push-pull, up to 30 s later) or a cluster of its own restarts alone (:func:`rejoin`, ~4 s), as does a
    lonely node still out :data:`GOSSIP_SETTLE` s after the announce."""
    whole = {n: changes[n].want_advertise for n in inside if n not in out and n in changes}
    views = await gossip_views(pool, sorted(out))
    lonely = {n for n in out if joined_nobody(views.get(n), ips[n])}
    if whole and lonely:
        anchor = gossip_seed(whole)
        t0 = time.monotonic()
        note = await reannounce_in_store(pool, inventory, ips, whole[anchor])
        left = await settle_gossip(pool, inside, ips, waiting_for=lonely)
        took = round(time.monotonic() - t0, 2)
        for n in lonely - set(left):
            c = changes[n]
            what = f"{out[n]}; joined the gossip once {note} ({took:g} s)"
            c.reason = f"{c.reason}; {what}" if c.action in RESTARTING else what
            if c.action == "none":
                c.action, c.command = "rejoin", REANNOUNCE_COMMAND
        out = {n: out[n] + (f"; still out {took:g} s after {note}" if n in lonely else "") for n in out if n in left}
    if out:
        await rejoin(docker, pool, inventory, ips, changes, out, inside)


async def apply(docker: DockerNodes, pool, addresses: UnderlayAddresses, inventory,
                wave: int | None = None) -> list[DockerStoreChange]:
    """Configure the nodes in waves and see that the overlay's gossip comes out whole; one DockerError
    listing every node that failed.

    Docker 20.10's classic overlay keeps its peers in a serf cluster (port 7946). A starting dockerd
    joins it through ONE node it picks from the store's node list (``/docker/nodes``), and only once
    (libnetwork's overlay driver: ``joinOnce``). When several dockerds restart at once, one may pick
    another restarting one: not up yet (the join fails and it stays alone), one not joined to the rest yet
    (it knows only that part until memberlist's next push-pull), or itself joining back (the two form a
    cluster of their own). Seen: 1 three-node apply of ~8 left a node out. So:

    1. the seed (:func:`gossip_seed`) restarts alone, then the others ``wave`` at a time
       (:func:`restart_wave`; 1 is host by host), each wave once the previous one answers;
    2. after each wave, every configured node's gossip (:data:`GOSSIP_SCRIPT`: serf's member events in
       its dockerd's log) must know every other within :data:`FIRST_SETTLE` s;
    3. a node that does not is out and brought in (:func:`bring_in`): one that knows nobody by announcing
       a node of the whole gossip again in the store (it joins that node, no restart); the others, and a
       lonely one still out after that, are stopped, their entries taken out of the store's node list,
       and started one at a time (:func:`rejoin`), each joining only nodes of the whole gossip.
       A node already configured but out of the gossip (its dockerd started before its store answered, say)
       is planned as "rejoin" and goes through 3 as well.

    The first host that does not come back stops the apply: it is rolled back, the rest left untouched.
    """
    wave = restart_wave(inventory, wave)
    names = [n.name for n in inventory.nodes]
    ips = await addresses.all(inventory.nodes)
    planned = await asyncio.gather(*(plan_node(docker, pool, addresses, inventory, n) for n in names),
                                   return_exceptions=True)
    errors: list = [r for r in planned if isinstance(r, BaseException)]     # nothing was changed there
    changes = {c.node: c for c in planned if isinstance(c, DockerStoreChange)}
    mark_outsiders(list(changes.values()), ips)
    todo = [n for n in names if n in changes and changes[n].action in RESTARTING and changes[n].facts]
    inside = [n for n in names if n in changes and changes[n].action in ("none", "rejoin")]
    out = {n: changes[n].reason for n in inside if changes[n].action == "rejoin"}
    if out:                  # first, so no restarting dockerd can pick an outsider to join
        await bring_in(docker, pool, inventory, ips, changes, out, inside)
    failed: dict[str, NodeDockerFacts] = {}

    async def one(name: str) -> None:
        change = changes[name]
        assert change.facts is not None
        try:
            await _change_node(docker, pool, name, change, change.facts)
        except OverlayError:
            failed[name] = change.facts  # changed, and did not come back: rolled back below
            raise
    groups = waves(todo, wave, first=gossip_seed({n: changes[n].want_advertise for n in todo}) if todo else None)
    for i, group in enumerate(groups):
        results = await asyncio.gather(*(one(n) for n in group), return_exceptions=True)
        errors += [r for r in results if isinstance(r, BaseException)]
        if failed:
            # stop at the first host that does not come back: a bad change must not take Docker down everywhere
            for r in errors:
                if not isinstance(r, OverlayError):
                    raise r
            undo = [await rollback_node(docker, pool, n, f) for n, f in failed.items()]
            untouched = [n for g in groups[i + 1:] for n in g]
            raise DockerError("\n".join([str(e) for e in errors] + undo) + "; stopped there: "
                              + (f"{', '.join(untouched)} left untouched" if untouched else "no other host left"))
        inside += group
        out = await settle_gossip(pool, inside, ips, timeout=FIRST_SETTLE)
        if out:              # before the next wave, which would join them
            await bring_in(docker, pool, inventory, ips, changes, out, inside)
    left = await settle_gossip(pool, inside, ips) if len(inside) > 1 else {}
    for _ in range(REJOIN_ROUNDS - 1):
        if not left:
            break
        await rejoin(docker, pool, inventory, ips, changes, left, inside)
        left = await settle_gossip(pool, inside, ips)
    if left:
        errors.append(DockerError("; ".join(f"{n}: {why} after restarting it alone {REJOIN_ROUNDS} time(s)"
                                            for n, why in left.items())))
    raise_gathered(errors, DockerError)
    return [changes[n] for n in names if n in changes]
