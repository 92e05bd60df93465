"""The local lab: real nodes (sshd + dockerd, each in its own namespaces) on this machine.

``lab_up`` builds a lab of N nodes named docker-node1..N and writes an ordinary inventory for
it (``core.paths.lab_dir(name)/inventory.toml``); everything else drives the lab through that
inventory over SSH, exactly like a user's own hosts. ``lab_down`` removes what ``lab_up`` made,
also from a half-built lab. Bookkeeping is in :mod:`core.lab.state`, the wiring in
:mod:`core.lab.net`, the nodes in :mod:`core.lab.node`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path

from core.errors import LabError, OverlayError, UsageError
from core.lab import net as lab_net
from core.lab import node as lab_node
from core.lab.state import (
    GLOBAL_LOCK,
    FileLock,
    LabInfo,
    LabNodeInfo,
    all_states,
    check_can_run,
    check_name,
    check_owner,
    info_from_state,
    lab_lock,
    lab_state,
    not_up,
    owner_file,
    read_json,
    write_json,
)
from core.model import Inventory
from core.paths import lab_dir
from core.pki.cluster import pki_dir

__all__ = ["LabInfo", "LabNodeInfo", "check_can_run", "check_name", "lab_down", "lab_state", "lab_status",
           "lab_up", "wait_ready"]
READY_TIMEOUT = 90.0


# ---------------------------------------------------------------- up

async def lab_up(name: str = "lab", nodes: int | None = None) -> LabInfo:
    """Bring lab ``name`` up with ``nodes`` nodes (default 2).

    A lab that exists is never torn down: what is broken is healed in place (a missing namespace
    rebuilds only that node, from its own files; a dead sshd or dockerd is started again inside the
    node's namespaces; a link that is down is set up) and ``nodes`` above its size adds nodes. What was
    healed or added is in :attr:`LabInfo.healed`. Only a half-built lab (an interrupted first build) is
    cleaned and built again.
    """
    check_name(name)
    if nodes is not None and not 1 <= nodes <= 50:
        raise UsageError(f"--nodes must be from 1 to 50, got {nodes}")
    check_can_run()
    d = lab_dir(name).resolve()
    _check_state_dir_visible(d)
    lock = lab_lock(name)
    await asyncio.to_thread(lock.acquire)
    try:
        check_owner(name, d)
        state = read_json(d / "state.json")
        if state and state.get("phase") == "up":
            return await _heal_and_grow(name, d, state, nodes)
        _teardown(name)                     # half-built or leftover: nothing worth keeping, start clean
        return await _build(name, d, nodes or 2)
    finally:
        lock.release()


async def _heal_and_grow(name: str, d: Path, state: dict, nodes: int | None) -> LabInfo:
    t0 = time.monotonic()
    have = len(state["nodes"])
    if nodes is not None and nodes < have:
        raise LabError(f"lab {name!r} is up with {have} nodes, more than {nodes}: take nodes out of the "
                       f"cluster with `overlay-tui node remove NAME`, or take the lab down "
                       f"(`overlay-tui lab down --name {name}`)")
    healed = await asyncio.to_thread(_heal, name, d, state)
    fresh: list[str] = []
    if nodes is not None and nodes > have:
        fresh = await asyncio.to_thread(_grow, name, d, state, nodes)
        healed += [f"{n}: added" for n in fresh]
    write_json(d / "state.json", state)
    info = info_from_state(state)
    # a healed or added node answers SSH (and Docker) before `lab up` returns; an untouched one must answer too
    await wait_ready(info, timeout=READY_TIMEOUT if healed else 10.0, docker=bool(healed))
    seconds = round(time.monotonic() - t0, 2) if healed else 0.0
    return dataclasses.replace(info, seconds=seconds, healed=tuple(healed))


def _node_index(node: dict) -> int:
    return int(str(node["name"]).removeprefix("docker-node"))


def _plan_of(name: str, d: Path, index: int, i: int) -> lab_node.NodePlan:
    names = lab_net.LabNames(name)
    return lab_node.NodePlan(name, i, lab_net.node_address(index, i), names.node_ns(i),
                             d / "nodes" / f"docker-node{i}", d)


def _start(plan: lab_node.NodePlan, node: dict) -> None:
    proc = lab_node.start_node(plan)
    _children[proc.pid] = proc
    node["pid"] = proc.pid
    node["init_pid"] = lab_node.init_pid(proc.pid)
    node["pidns"] = list(lab_node.ns_id(node["init_pid"], "pid") or []) if node["init_pid"] else None


def _heal(name: str, d: Path, state: dict) -> list[str]:
    """Repair an up lab in place; return one line per thing healed (empty: nothing was broken)."""
    names = lab_net.LabNames(name)
    index = state["index"]
    healed = lab_net.ensure_switch(names, index)
    for node in state["nodes"]:
        i, ns = _node_index(node), node["netns"]
        init = node.get("init_pid")
        pidns = tuple(node["pidns"]) if node.get("pidns") else None
        netns = lab_net.netns_id(ns)
        intact = (netns is not None and init and lab_node.alive(init) and pidns is not None
                  and lab_node.ns_id(init, "pid") == pidns and lab_node.ns_id(init, "net") == netns)
        if not intact:
            why = "its namespace was missing" if netns is None else "its process tree was gone"
            pids = [p for p in (node.get("pid"), init) if p]
            alive_pidns = pidns if init and lab_node.alive(init) and lab_node.ns_id(init, "pid") == pidns else None
            lab_node.kill_node(netns, pids, alive_pidns)
            for pid in pids:
                proc = _children.pop(pid, None)
                if proc is not None:
                    proc.wait()
            if netns is None:
                lab_net.ip("netns", "add", ns)
            lab_net.ensure_node_wiring(names, index, i, node["name"])
            _start(_plan_of(name, d, index, i), node)
            healed.append(f"{node['name']}: rebuilt ({why}), from its own files: Docker and etcd data kept")
            continue
        healed += lab_net.ensure_node_wiring(names, index, i, node["name"])
        assert pidns is not None and init
        for service, running in lab_node.services_running(pidns).items():
            if not running:
                lab_node.restart_service(init, service)
                healed.append(f"{node['name']}: {service} was not running: started again in the node")
    return healed


def _grow(name: str, d: Path, state: dict, count: int) -> list[str]:
    """Add nodes until the lab has ``count``; return the new nodes' names."""
    names = lab_net.LabNames(name)
    index = state["index"]
    used = {_node_index(n) for n in state["nodes"]}
    new_i = [i for i in range(1, 51) if i not in used][:count - len(state["nodes"])]
    plans = [_plan_of(name, d, index, i) for i in new_i]
    for p in plans:
        p.dir.mkdir(parents=True, exist_ok=True)
        state["nodes"].append({"name": p.name, "address": p.address, "netns": p.netns, "pid": 0, "dir": str(p.dir)})
    write_json(d / "state.json", state)         # recorded before anything exists, so `lab down` finds it
    everyone = [(n["name"], n["address"]) for n in state["nodes"]]
    keygens = []
    for p in plans:
        lab_net.ip("netns", "add", p.netns)
        lab_net.ensure_node_wiring(names, index, p.i, p.name)
        lab_node.write_node_files(p, everyone)
        keygens.append(lab_node.keygen(p.host_key, f"{p.name}.{name}"))
    for k in keygens:
        if k.wait() != 0:
            err = k.stderr.read().decode(errors="replace").strip() if k.stderr else ""
            raise LabError(f"ssh-keygen failed: {err}")
    for n in state["nodes"]:
        if n["name"] not in {p.name for p in plans}:
            lab_node.write_hosts(_plan_of(name, d, index, _node_index(n)), everyone)
    _add_keys_and_inventory(d, plans)
    for p in plans:
        node = next(n for n in state["nodes"] if n["name"] == p.name)
        _start(p, node)
    return [p.name for p in plans]


def _check_state_dir_visible(d: Path) -> None:
    for masked in lab_node.MASKED_PATHS:
        if d == Path(masked) or Path(masked) in d.parents:
            raise LabError(f"the lab's state dir {d} is below {masked}, which each node replaces with its own: "
                           "set OVERLAY_TUI_STATE to another directory")


async def _build(name: str, d: Path, count: int) -> LabInfo:
    t0 = time.monotonic()
    names = lab_net.LabNames(name)
    d.mkdir(parents=True, exist_ok=True)
    write_json(owner_file(name), {"dir": str(d)})
    state: dict = {"name": name, "phase": "building", "dir": str(d), "switch_ns": names.switch_ns,
                   "seat_link": names.seat_link, "nodes": []}
    keygens = [lab_node.keygen(d / "id_ed25519", f"overlay-tui lab {name}")]
    (d / "empty_rc").write_text("")
    with FileLock(GLOBAL_LOCK):             # pick a free /24 and claim it by wiring it up
        index = lab_net.pick_index(all_states())
        state.update(index=index, subnet=f"198.18.{index}.0/24", seat_address=lab_net.seat_address(index))
        plans = [lab_node.NodePlan(name, i, lab_net.node_address(index, i), names.node_ns(i),
                                   d / "nodes" / f"docker-node{i}", d) for i in range(1, count + 1)]
        state["nodes"] = [{"name": p.name, "address": p.address, "netns": p.netns, "pid": 0, "dir": str(p.dir)}
                          for p in plans]
        write_json(d / "state.json", state)
        lab_net.build_network(names, index, count)
    for p in plans:
        p.dir.mkdir(parents=True, exist_ok=True)
        lab_node.write_node_files(p, [(q.name, q.address) for q in plans])
        keygens.append(lab_node.keygen(p.host_key, f"{p.name}.{name}"))
    for k in keygens:
        if k.wait() != 0:
            why = k.stderr.read().decode(errors='replace').strip() if k.stderr else f"exit {k.returncode}"
            raise LabError(f"ssh-keygen failed: {why}")
    _write_keys_and_inventory(d, plans, index)
    for p, node in zip(plans, state["nodes"]):
        proc = lab_node.start_node(p)
        _children[proc.pid] = proc
        node["pid"] = proc.pid
    for node in state["nodes"]:
        node["init_pid"] = lab_node.init_pid(node["pid"])
        node["pidns"] = list(lab_node.ns_id(node["init_pid"], "pid") or []) if node["init_pid"] else None
    write_json(d / "state.json", state)
    info = info_from_state(state)
    await wait_ready(info, timeout=READY_TIMEOUT, docker=True)
    state.update(phase="up", seconds=round(time.monotonic() - t0, 2))
    write_json(d / "state.json", state)
    return info_from_state(state)


_children: dict[int, subprocess.Popen] = {}     # Popen objects of nodes started by this process (reaped on down)


def _node_keys(d: Path, p: lab_node.NodePlan) -> str:
    """Authorize the lab's client key on node ``p``; return its known_hosts line."""
    (p.dir / "etc-ssh").chmod(0o755)             # sshd's StrictModes checks the path
    (p.dir / "etc-ssh" / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    (p.dir / "etc-ssh" / "authorized_keys").chmod(0o644)
    kind, key = Path(str(p.host_key) + ".pub").read_text().split()[:2]
    return f"{p.address} {kind} {key}"


def _add_keys_and_inventory(d: Path, plans: list[lab_node.NodePlan]) -> None:
    """Append new nodes to known_hosts and to the inventory (whatever else it says is kept)."""
    lines = [_node_keys(d, p) for p in plans]
    with open(d / "known_hosts", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    inv: list[str] = []
    for p in plans:
        inv += ["", "[[node]]", f'name = "{p.name}"', f'address = "{p.address}"', "port = 22"]
    with open(d / "inventory.toml", "a") as fh:
        fh.write("\n".join(inv) + "\n")


def _write_keys_and_inventory(d: Path, plans: list[lab_node.NodePlan], index: int) -> None:
    lines = [_node_keys(d, p) for p in plans]
    (d / "known_hosts").write_text("\n".join(lines) + "\n")
    inv = [f"# Inventory of the local lab {d.name!r}, written by `overlay-tui lab up`; removed by `lab down`.",
           "[defaults]", 'user = "root"', f"key = {json.dumps(str(d / 'id_ed25519'))}",
           f"known_hosts = {json.dumps(str(d / 'known_hosts'))}", "", "[cluster]",
           f'network_subnet = "198.19.{index}.0/24"']
    for p in plans:
        inv += ["", "[[node]]", f'name = "{p.name}"', f'address = "{p.address}"', "port = 22"]
    (d / "inventory.toml").write_text("\n".join(inv) + "\n")


async def wait_ready(info: LabInfo, timeout: float, docker: bool) -> None:
    """Wait until every node answers SSH (host key checked) and, with ``docker``, Docker's API."""
    from core.ssh import SSHPool

    inv = info.inventory()
    specs = [dataclasses.replace(n, connect_timeout=2.0, command_timeout=5.0) for n in inv.nodes]
    pool = SSHPool(specs)
    deadline = time.monotonic() + timeout

    async def one(spec) -> None:
        last = "no answer"
        # `docker version` asks the API only: `docker info` also asks the cluster store and hangs on a rebuilt node
        # whose etcd member is not back yet (lab up waited 23-50 s on it)
        cmd = "docker version --format '{{.Server.Version}}'" if docker else "true"
        node = next(n for n in info.nodes if n.name == spec.name)
        while time.monotonic() < deadline:
            if node.pid and not lab_node.alive(node.pid):
                raise LabError(f"lab {info.name}: {spec.name} stopped while starting ({_last_line(info, node)}); "
                               f"clean up with `overlay-tui lab down --name {info.name}`")
            try:
                res = await pool.run(spec, cmd, timeout=5.0)
                if res.ok and (not docker or res.stdout.strip()):
                    return
                last = ((res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.exit_status}"])[0]
            except OverlayError as e:
                last = str(e)
            await asyncio.sleep(0.1)
        raise LabError(f"lab {info.name}: {spec.name} not ready after {timeout:g} s ({last}); see "
                       f"{Path(info.dir) / 'nodes' / spec.name / 'var-log' / 'dockerd.log'}, then clean up with "
                       f"`overlay-tui lab down --name {info.name}`")

    try:
        await asyncio.gather(*(one(s) for s in specs))
    finally:
        await pool.close()


def _last_line(info: LabInfo, node: LabNodeInfo) -> str:
    log = Path(info.dir) / "nodes" / node.name / "init.log"
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return f"{log}: {' / '.join(ln.strip() for ln in lines[-2:])}" if lines else f"{log} is empty"


# ---------------------------------------------------------------- down

def lab_down(name: str = "lab") -> list[str]:
    """Remove everything lab ``name`` made (also half-built); return a list of what was removed."""
    check_name(name)
    check_can_run(teardown=True)
    with lab_lock(name):
        check_owner(name, lab_dir(name).resolve())
        return _teardown(name)


def _teardown(name: str) -> list[str]:
    d = lab_dir(name).resolve()
    names = lab_net.LabNames(name)
    state = read_json(d / "state.json") or {}
    removed: list[str] = []
    nodes = {n["netns"]: n for n in state.get("nodes", [])}
    for ns in lab_net.list_netns():
        if names.owns_netns(ns) and ns not in nodes and ns != names.switch_ns:
            nodes[ns] = {"netns": ns, "pid": 0}
    for ns, n in nodes.items():
        pidns = tuple(n["pidns"]) if n.get("pidns") else None
        if pidns and not (n.get("init_pid") and lab_node.alive(n["init_pid"])
                          and lab_node.ns_id(n["init_pid"], "pid") == pidns):
            pidns = None     # its pid 1 is gone, so is the namespace: never trust a recycled inode
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
        subprocess.run(["umount", "-l", m], capture_output=True)
    if d.exists():
        shutil.rmtree(d)
        removed.append(f"state {d}")
    pki = pki_dir(Inventory(path=str(d / "inventory.toml"), nodes=()))    # the lab cluster's CA and certificates
    if pki.exists():
        shutil.rmtree(pki)
        removed.append(f"certificates {pki}")
    owner = read_json(owner_file(name))
    if owner and owner.get("dir") == str(d):
        owner_file(name).unlink(missing_ok=True)
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
        raise not_up(name)
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
