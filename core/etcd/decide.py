"""What to do on one node before starting etcd: adopt, start, or refuse (never clobber).

:func:`inspect_script` is one shell round trip that reports the etcd processes in the node's own
network namespace (with their argv from /proc), the installed version, and the state of the planned
data dir; :func:`parse_inspection` reads its output and :func:`decide` turns it into an
:class:`EtcdAction`. Pure except for the script text, so the decisions are tested offline.
"""
from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass, field

from core.etcd.plan import EtcdMemberPlan, flag_differences, marker_matches, marker_transport_only, transport_only

SEP = "\x1f"   # /proc/<pid>/cmdline NULs become this, so argv survives one line of text


def inspect_script(plan: EtcdMemberPlan) -> str:
    """Shell that prints ``key=value`` lines describing etcd on the node."""
    dd = shlex.quote(plan.data_dir)
    mk = shlex.quote(plan.marker_path)
    return (
        "me=$(readlink /proc/$$/ns/net); "
        "for p in $(pgrep -x etcd); do "
        '  [ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] || continue; '
        "  echo pid=$p; echo unit=$(grep -o 'etcd[^/]*[.]service' /proc/$p/cgroup 2>/dev/null | tail -n 1); "
        "  printf 'argv=%s\\n' \"$(tr '\\000' '\\037' < /proc/$p/cmdline)\"; "
        "done; "
        "echo version=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'); "
        f"[ -d {dd} ] && echo datadir=yes; "
        f"[ -d {dd}/member ] && echo member=yes; "
        f"[ -f {mk} ] && echo marker=$(base64 -w0 < {mk}); "
        "true"
    )


@dataclass
class Inspection:
    """What :func:`inspect_script` found on one node."""

    processes: list[tuple[int, list[str]]] = field(default_factory=list)   # (pid, argv)
    units: dict[int, str] = field(default_factory=dict)                  # pid -> systemd unit running it
    version: str | None = None
    data_dir_exists: bool = False
    has_member: bool = False
    marker: str | None = None


def parse_inspection(text: str) -> Inspection:
    out = Inspection()
    pid: int | None = None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "pid":
            pid = int(value)
        elif key == "unit" and pid is not None and value.strip():
            out.units[pid] = value.strip()
        elif key == "argv" and pid is not None:
            out.processes.append((pid, [a for a in value.split(SEP) if a != ""]))
            pid = None
        elif key == "version":
            out.version = value.strip() or None
        elif key == "datadir":
            out.data_dir_exists = True
        elif key == "member":
            out.has_member = True
        elif key == "marker" and value:
            out.marker = base64.b64decode(value).decode(errors="replace")
    return out


@dataclass
class EtcdAction:
    """The decision for one node. ``kind``: "adopt", "start", "refuse" or "migrate" (this cluster's member,
    running or stopped, with the other transport: plaintext while TLS is wanted, or back)."""

    node: str
    kind: str
    reason: str
    stop_pids: list[int] = field(default_factory=list)   # force: running etcd to stop first
    stop_units: list[str] = field(default_factory=list)  # force: systemd units to stop (`systemctl stop`)
    wipe: bool = False                                   # force: remove the foreign data dir
    write_marker: bool = False
    pid: int | None = None                               # adopted process


def version_problem(version: str | None) -> str | None:
    """Why this etcd cannot serve Docker's classic store (None: fine)."""
    if not version:
        return "etcd is not installed (install etcd-server 3.4 or 3.5; the classic Docker store needs its v2 API)"
    m = re.match(r"(\d+)\.(\d+)", version)
    if m and (int(m[1]), int(m[2])) >= (3, 6):
        return (f"etcd {version} has no v2 API (removed in 3.6) and Docker's classic store needs it; "
                "install etcd 3.4 or 3.5")
    return None


def decide(plan: EtcdMemberPlan, found: Inspection, force: bool = False) -> EtcdAction:
    """Adopt a member running with the planned flags; refuse to clobber anything else unless forced."""
    node = plan.node
    problem = version_problem(found.version)
    if problem and not found.processes:
        return EtcdAction(node, "refuse", f"{node}: {problem}")
    stop: list[int] = []
    units: list[str] = []
    for pid, argv in found.processes:
        diffs = flag_differences(argv, plan)
        if not diffs:
            return EtcdAction(node, "adopt", f"{node}: etcd pid {pid} already runs with the planned flags",
                              pid=pid, write_marker=found.marker is None)
        unit = found.units.get(pid)
        if transport_only(argv, plan):
            if not force:
                return EtcdAction(node, "refuse", migrate_reason(node, plan, pid))
            return EtcdAction(node, "migrate", f"{node}: migrating the member (pid {pid}) to {_mode(plan.tls)} "
                              "on its data dir", stop_pids=[] if unit else [pid], stop_units=[unit] if unit else [],
                              write_marker=True)
        if not force:
            how = (f"it is the systemd service {unit}: `systemctl disable --now {unit}` on the node"
                   if unit else "stop it yourself")
            return EtcdAction(node, "refuse",
                              f"{node}: an etcd (pid {pid}) already runs there with other flags ("
                              + "; ".join(diffs[:3]) + ("; ..." if len(diffs) > 3 else "")
                              + f"); {how}, or apply with --force to stop and replace it")
        if unit:
            units.append(unit)
        else:
            stop.append(pid)
    if found.has_member:
        ok, what = marker_matches(found.marker, plan)
        if not ok and marker_transport_only(found.marker, plan) and not stop:
            if not force:
                return EtcdAction(node, "refuse", migrate_reason(node, plan, None))
            return EtcdAction(node, "migrate", f"{node}: migrating the stopped member to {_mode(plan.tls)} on its "
                              "data dir", stop_units=units, write_marker=True)
        if not ok:
            if not force:
                return EtcdAction(node, "refuse",
                                  f"{node}: data dir {plan.data_dir} holds an etcd member with {what}; "
                                  "it may belong to another cluster: move it away, or apply with --force "
                                  "to wipe it (its data is lost)")
            return EtcdAction(node, "start", f"{node}: wiping foreign data dir ({what}) and starting etcd",
                              stop_pids=stop, stop_units=units, wipe=True, write_marker=True)
        return EtcdAction(node, "start", f"{node}: restarting the member from its data dir", stop_pids=stop,
                          stop_units=units)
    return EtcdAction(node, "start", f"{node}: starting a new member", stop_pids=stop, stop_units=units,
                      write_marker=True)


def _mode(tls: bool) -> str:
    return "TLS (https, client certificates)" if tls else "plaintext (http, no authentication)"


def migrate_reason(node: str, plan: EtcdMemberPlan, pid: int | None) -> str:
    """Why a member of this cluster with the other transport is not replaced without --force, and what --force does."""
    what = f"etcd (pid {pid}) runs" if pid else "the stopped member in its data dir was made"
    return (f"{node}: {what} in {_mode(not plan.tls)} and the inventory wants {_mode(plan.tls)}; "
            "`overlay-tui runbook apply --force` migrates the cluster on the same data dirs, keeping Docker's keys: "
            "every member stops, the first restarts alone (--force-new-cluster) with the new URLs, the others "
            "rejoin it one by one from a fresh data dir, then dockerd is pointed at the cluster again")
