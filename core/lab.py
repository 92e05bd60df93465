"""The local lab: real nodes (sshd + dockerd, each in its own namespaces) on this machine.

``lab_up`` builds a lab of N nodes named docker-node1..N and writes an ordinary inventory for
it (``core.paths.lab_dir(name)/inventory.toml``); everything else drives the lab through that
inventory over SSH, exactly like a user's own hosts. ``lab_down`` removes what ``lab_up`` made,
also from a half-built lab. The wiring is in :mod:`core.lab_net`, the nodes in :mod:`core.lab_node`.

State of lab NAME lives in ``lab_dir(NAME)``: ``state.json`` (pids, namespaces, links, index),
the client key ``id_ed25519``, ``known_hosts``, ``authorized_keys``, ``inventory.toml`` and one
directory per node (host key, sshd config, init script and the node-local /var/lib/docker...).
Kernel-visible names (namespaces, the seat link) are global, so a lab name is taken machine-wide:
``/run/overlay-tui/labs/NAME.json`` records which state dir owns it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core import lab_net, lab_node
from core.errors import LabError, OverlayError, UsageError
from core.inventory import load_inventory
from core.model import Inventory
from core.paths import lab_dir, labs_dir

RUN_DIR = Path("/run/overlay-tui")
GLOBAL_LOCK = Path("/run/overlay-tui-lab.lock")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
READY_TIMEOUT = 90.0
# binary -> Debian package that brings it (`make run` installs them)
REQUIRED_BINARIES = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "mount": "mount",
                     "dockerd": "docker.io", "containerd": "containerd", "docker": "docker.io",
                     "sshd": "openssh-server", "ssh-keygen": "openssh-client"}


@dataclass(frozen=True)
class LabNodeInfo:
    """One node of an up lab."""

    name: str
    address: str
    netns: str
    pid: int                   # `unshare` in the root pid namespace; killing it ends the node
    init_pid: int | None       # the node's pid 1, as seen from the root pid namespace


@dataclass(frozen=True)
class LabInfo:
    """An up lab, as ``lab_up`` and ``lab_state`` describe it."""

    name: str
    index: int
    subnet: str
    seat_address: str
    seat_link: str
    switch_ns: str
    dir: str
    inventory_path: str
    key: str
    known_hosts: str
    nodes: tuple[LabNodeInfo, ...]
    seconds: float = 0.0       # how long `lab up` took (0 when it found the lab already up)

    def inventory(self) -> Inventory:
        return load_inventory(self.inventory_path)


# ---------------------------------------------------------------- checks, locks, state

def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(f"invalid lab name {name!r}: use letters, digits, '-' or '_' (at most 32, starting with a letter or digit)")


def check_can_run() -> None:
    """Raise :class:`LabError` if this process cannot build a lab (not root, missing binaries)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, daemons): run it with sudo, or as root")
    missing = sorted({pkg for binary, pkg in REQUIRED_BINARIES.items() if not _which(binary)})
    if missing:
        raise LabError(f"missing programs for the lab: install the Debian package(s) {' '.join(missing)} "
                       f"(`make run` does it, or `apt-get install {' '.join(missing)}`)")


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


class _FileLock:
    """An exclusive flock on ``path`` (lock files stay in /run; they are empty)."""

    def __init__(self, path: Path) -> None:
        self.path, self._fh = path, None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a")
        fcntl.flock(self._fh, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()        # closing drops the lock
            self._fh = None

    def __enter__(self) -> "_FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lab_lock(name: str) -> _FileLock:
    return _FileLock(RUN_DIR / "locks" / f"{name}.lock")


def _owner_file(name: str) -> Path:
    return RUN_DIR / "labs" / f"{name}.json"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _check_owner(name: str, d: Path) -> None:
    """Refuse a lab name that another state dir's live lab holds."""
    owner = _read_json(_owner_file(name))
    if owner and owner.get("dir") != str(d) and (Path(owner["dir"]) / "state.json").is_file():
        raise LabError(f"lab {name!r} is already up from another state dir ({owner['dir']}): pick another "
                       f"--name, or take it down with OVERLAY_TUI_STATE={Path(owner['dir']).parent.parent} "
                       f"overlay-tui lab down --name {name}")


def _all_states() -> list[dict]:
    states = [s for p in labs_dir().glob("*/state.json") if (s := _read_json(p))]
    for p in (RUN_DIR / "labs").glob("*.json"):
        owner = _read_json(p)
        if owner and (s := _read_json(Path(owner.get("dir", "/nonexistent")) / "state.json")):
            states.append(s)
    return states


def _info(state: dict) -> LabInfo:
    d = Path(state["dir"])
    return LabInfo(
        name=state["name"], index=state["index"], subnet=state["subnet"], seat_address=state["seat_address"],
        seat_link=state["seat_link"], switch_ns=state["switch_ns"], dir=str(d),
        inventory_path=str(d / "inventory.toml"), key=str(d / "id_ed25519"), known_hosts=str(d / "known_hosts"),
        nodes=tuple(LabNodeInfo(n["name"], n["address"], n["netns"], n["pid"], n.get("init_pid"))
                    for n in state["nodes"]),
        seconds=state.get("seconds", 0.0))


def lab_state(name: str = "lab") -> LabInfo | None:
    """The lab's recorded state if ``lab up`` finished building it, else None."""
    state = _read_json(lab_dir(name) / "state.json")
    if not state or state.get("phase") != "up":
        return None
    return _info(state)


# ---------------------------------------------------------------- up

async def lab_up(name: str = "lab", nodes: int | None = None) -> LabInfo:
    """Bring lab ``name`` up with ``nodes`` nodes (default 2); quick and unchanged if it is up already."""
    check_name(name)
    if nodes is not None and not 1 <= nodes <= 50:
        raise UsageError(f"--nodes must be from 1 to 50, got {nodes}")
    check_can_run()
    d = lab_dir(name).resolve()
    _check_state_dir_visible(d)
    lock = _lab_lock(name)
    await asyncio.to_thread(lock.acquire)
    try:
        _check_owner(name, d)
        current = lab_state(name)
        if current and (nodes is None or nodes == len(current.nodes)) and await _healthy(current):
            return dataclasses.replace(current, seconds=0.0)
        if current and nodes is not None and nodes != len(current.nodes) and await _healthy(current):
            raise LabError(f"lab {name!r} is up with {len(current.nodes)} nodes, not {nodes}: "
                           f"take it down first (`overlay-tui lab down --name {name}`)")
        _teardown(name)                     # half-built, dead or leftover: start clean
        return await _build(name, d, nodes or 2)
    finally:
        lock.release()


def _check_state_dir_visible(d: Path) -> None:
    for masked in lab_node.MASKED_PATHS:
        if d == Path(masked) or Path(masked) in d.parents:
            raise LabError(f"the lab's state dir {d} is below {masked}, which each node replaces with its own: "
                           "set OVERLAY_TUI_STATE to another directory")


async def _healthy(info: LabInfo) -> bool:
    """Quick check of an up lab: every node's process tree runs and its sshd answers."""
    for n in info.nodes:
        if not lab_node.alive(n.pid) or lab_net.netns_id(n.netns) is None:
            return False
    try:
        await wait_ready(info, timeout=5.0, docker=False)
    except LabError:
        return False
    return True


async def _build(name: str, d: Path, count: int) -> LabInfo:
    t0 = time.monotonic()
    names = lab_net.LabNames(name)
    d.mkdir(parents=True, exist_ok=True)
    _write_json(_owner_file(name), {"dir": str(d)})
    state: dict = {"name": name, "phase": "building", "dir": str(d), "switch_ns": names.switch_ns,
                   "seat_link": names.seat_link, "nodes": []}
    keygens = [lab_node.keygen(d / "id_ed25519", f"overlay-tui lab {name}")]
    (d / "empty_rc").write_text("")
    with _FileLock(GLOBAL_LOCK):             # pick a free /24 and claim it by wiring it up
        index = lab_net.pick_index(_all_states())
        state.update(index=index, subnet=f"198.18.{index}.0/24", seat_address=lab_net.seat_address(index))
        plans = [lab_node.NodePlan(name, i, lab_net.node_address(index, i), names.node_ns(i),
                                   d / "nodes" / f"docker-node{i}", d) for i in range(1, count + 1)]
        state["nodes"] = [{"name": p.name, "address": p.address, "netns": p.netns, "pid": 0, "dir": str(p.dir)}
                          for p in plans]
        _write_json(d / "state.json", state)
        lab_net.build_network(names, index, count)
    for p in plans:
        p.dir.mkdir(parents=True, exist_ok=True)
        lab_node.write_node_files(p, [(q.name, q.address) for q in plans])
        keygens.append(lab_node.keygen(p.host_key, f"{p.name}.{name}"))
    for k in keygens:
        if k.wait() != 0:
            raise LabError(f"ssh-keygen failed: {k.stderr.read().decode(errors='replace').strip()}")
    _write_keys_and_inventory(d, plans, index)
    for p, node in zip(plans, state["nodes"]):
        proc = lab_node.start_node(p)
        _children[proc.pid] = proc
        node["pid"] = proc.pid
    for p, node in zip(plans, state["nodes"]):
        node["init_pid"] = lab_node.init_pid(node["pid"])
        node["pidns"] = list(lab_node.ns_id(node["init_pid"], "pid") or []) if node["init_pid"] else None
    _write_json(d / "state.json", state)
    info = _info(state)
    await wait_ready(info, timeout=READY_TIMEOUT, docker=True)
    state.update(phase="up", seconds=round(time.monotonic() - t0, 2))
    _write_json(d / "state.json", state)
    return _info(state)


_children: dict[int, object] = {}     # Popen objects of nodes started by this process (reaped on down)


def _write_keys_and_inventory(d: Path, plans: list[lab_node.NodePlan], index: int) -> None:
    pub = (d / "id_ed25519.pub").read_text()
    (d / "authorized_keys").write_text(pub)
    lines = []
    for p in plans:
        kind, key = Path(str(p.host_key) + ".pub").read_text().split()[:2]
        lines.append(f"{p.address} {kind} {key}")
    (d / "known_hosts").write_text("\n".join(lines) + "\n")
    inv = [f"# Inventory of the local lab {d.name!r}, written by `overlay-tui lab up`; removed by `lab down`.",
           "[defaults]", 'user = "root"', f"key = {json.dumps(str(d / 'id_ed25519'))}",
           f"known_hosts = {json.dumps(str(d / 'known_hosts'))}", "", "[cluster]",
           f'network_subnet = "198.19.{index}.0/24"']
    for p in plans:
        inv += ["", "[[node]]", f'name = "{p.name}"', f'address = "{p.address}"', "port = 22"]
    (d / "inventory.toml").write_text("\n".join(inv) + "\n")


async def wait_ready(info: LabInfo, timeout: float, docker: bool) -> None:
    """Wait until every node answers SSH (host key checked) and, with ``docker``, `docker info`."""
    from core.ssh import SSHPool

    inv = info.inventory()
    specs = [dataclasses.replace(n, connect_timeout=2.0, command_timeout=5.0) for n in inv.nodes]
    pool = SSHPool(specs)
    deadline = time.monotonic() + timeout

    async def one(spec) -> None:
        last = "no answer"
        cmd = "docker info --format '{{.ID}}'" if docker else "true"
        while time.monotonic() < deadline:
            try:
                res = await pool.run(spec, cmd, timeout=5.0)
                if res.ok and (not docker or res.stdout.strip()):
                    return
                last = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.exit_status}"]
                last = last[0]
            except OverlayError as e:
                last = str(e)
            await asyncio.sleep(0.1)
        raise LabError(f"lab {info.name}: {spec.name} not ready after {timeout:g} s ({last}); "
                       f"see {Path(info.dir) / 'nodes' / spec.name / 'init.log'} and its var-log/dockerd.log")

    try:
        await asyncio.gather(*(one(s) for s in specs))
    finally:
        await pool.close()


# ---------------------------------------------------------------- down

def lab_down(name: str = "lab") -> list[str]:
    """Remove everything lab ``name`` made (also half-built); return a list of what was removed."""
    check_name(name)
    check_can_run()
    with _lab_lock(name):
        owner = _read_json(_owner_file(name))
        d = lab_dir(name).resolve()
        if owner and owner.get("dir") != str(d) and (Path(owner["dir"]) / "state.json").is_file():
            _check_owner(name, d)
        return _teardown(name)


def _teardown(name: str) -> list[str]:
    d = lab_dir(name).resolve()
    names = lab_net.LabNames(name)
    state = _read_json(d / "state.json") or {}
    removed: list[str] = []
    nodes = {n["netns"]: n for n in state.get("nodes", [])}
    for ns in lab_net.list_netns():
        if names.owns_netns(ns) and ns not in nodes and ns != names.switch_ns:
            nodes[ns] = {"netns": ns, "pid": 0}
    for ns, n in nodes.items():
        pidns = tuple(n["pidns"]) if n.get("pidns") else None
        pids = [p for p in (n.get("pid"), n.get("init_pid")) if p]
        lab_node.kill_node(lab_net.netns_id(ns), pids, pidns)
        for pid in pids:
            proc = _children.pop(pid, None)
            if proc is not None:
                proc.wait()
        if n.get("dir"):
            lab_node.remove_container_cgroups(Path(n["dir"]))
        removed.append(f"node {n.get('name', ns)}")
    removed += lab_net.remove_network(names)
    leaked = [m for m in _mount_points() if m == str(d) or m.startswith(str(d) + "/")]
    for m in sorted(leaked, key=len, reverse=True):
        os.system(f"umount -l '{m}' 2>/dev/null")
    if d.exists():
        shutil.rmtree(d)
        removed.append(f"state {d}")
    owner = _read_json(_owner_file(name))
    if owner and owner.get("dir") == str(d):
        _owner_file(name).unlink(missing_ok=True)
    return removed


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4].replace("\\040", " ") for line in fh]


# ---------------------------------------------------------------- status

async def lab_status(name: str = "lab") -> dict:
    """The JSON-ready status of an up lab; :class:`LabError` if it is not up."""
    check_name(name)
    info = lab_state(name)
    if info is None:
        raise LabError(f"lab {name!r} is not up: start it with `overlay-tui lab up --name {name}`")
    from core.ssh import SSHPool

    inv = info.inventory()
    specs = [dataclasses.replace(n, connect_timeout=3.0) for n in inv.nodes]
    pool = SSHPool(specs)

    async def reachable(spec) -> bool:
        try:
            return (await pool.run(spec, "true", timeout=5.0)).ok
        except OverlayError:
            return False

    try:
        ok = await asyncio.gather(*(reachable(s) for s in specs))
    finally:
        await pool.close()
    return {"name": info.name, "inventory": info.inventory_path,
            "nodes": [{"name": s.name, "address": s.address, "ssh_user": s.user, "ssh_port": s.port,
                       "ssh_key": s.key, "known_hosts": s.known_hosts, "reachable": r}
                      for s, r in zip(specs, ok)]}
