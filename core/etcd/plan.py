"""Plan each node's etcd member exactly as the classic tutorial starts it.

One :class:`EtcdMemberPlan` per node holds the argv and the shell-quoted command line (what
``runbook plan`` prints). Pure functions only: no SSH here, so planning is testable offline.
Each data dir carries a small marker file, written when overlay-tui creates the member, that says
which cluster the dir belongs to (see :func:`marker_matches`).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from core.errors import EtcdError
from core.etcd.tls import tls_flags
from core.model import Inventory

ETCD_LOG = "/var/log/etcd.log"
MARKER_NAME = "overlay-tui.json"


@dataclass(frozen=True)
class EtcdMemberPlan:
    """What one node runs: ``etcd`` with the tutorial's flags, detached, logging to :data:`ETCD_LOG`."""

    node: str
    ip: str
    token: str
    initial_cluster: str
    data_dir: str
    argv: tuple[str, ...]
    log: str = ETCD_LOG

    @property
    def command(self) -> str:
        """The exact command line, shell-quoted."""
        return shlex.join(self.argv)

    @property
    def launch_line(self) -> str:
        """How it is started on the node (detached, outliving the SSH session)."""
        return f"nohup setsid {self.command} >> {shlex.quote(self.log)} 2>&1 < /dev/null &"

    @property
    def client_url(self) -> str:
        return _flag_value(self.argv, "--advertise-client-urls") or ""

    @property
    def tls(self) -> bool:
        return self.client_url.startswith("https://")

    @property
    def marker_path(self) -> str:
        return f"{self.data_dir}/{MARKER_NAME}"

    def marker(self) -> dict[str, str]:
        """The marker written into a data dir overlay-tui creates for this member."""
        return {"tool": "overlay-tui", "name": self.node, "token": self.token,
                "initial_cluster": self.initial_cluster}


def _url(ip: str, port: int, scheme: str = "http") -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{scheme}://{host}:{port}"


def member_data_dir(base: str, node: str) -> str:
    """``<etcd_data_dir>/<node>.etcd`` (the name etcd itself uses by default)."""
    base = base.rstrip("/") or "/"
    if not base.startswith("/"):
        raise EtcdError(f"etcd_data_dir {base!r} must be an absolute path (inventory [cluster] table)")
    return f"{base.rstrip('/')}/{node}.etcd"


def plan_cluster(inventory: Inventory, ips: dict[str, str]) -> list[EtcdMemberPlan]:
    """One plan per member node (see :mod:`core.etcd.sizing`); ``ips`` maps node name -> underlay IP
    (see core.nodes.address).

    With ``[cluster] etcd_tls`` (the default) every URL is https and :func:`core.etcd.tls.tls_flags`
    are added; with ``etcd_tls = false`` the command is the tutorial's, plaintext.
    """
    from core.etcd.sizing import sizing

    c = inventory.cluster
    scheme = "https" if c.etcd_tls else "http"
    members = sizing(inventory).members
    missing = [n.name for n in members if not ips.get(n.name)]
    if missing:
        raise EtcdError(f"no underlay IP known for {', '.join(missing)}: set `advertise` in the inventory")
    initial = ",".join(f"{n.name}={_url(ips[n.name], c.etcd_peer_port, scheme)}" for n in members)
    plans = []
    for n in members:
        ip = ips[n.name]
        peer, client = _url(ip, c.etcd_peer_port, scheme), _url(ip, c.etcd_client_port, scheme)
        data_dir = member_data_dir(c.etcd_data_dir, n.name)
        argv = (
            "etcd", "--name", n.name,
            "--initial-advertise-peer-urls", peer,
            "--listen-peer-urls", peer,
            "--listen-client-urls", f"{client},{_url('127.0.0.1', c.etcd_client_port, scheme)}",
            "--advertise-client-urls", client,
            "--initial-cluster-token", c.etcd_token,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--data-dir", data_dir,
            "--enable-v2=true",
        ) + (tls_flags() if c.etcd_tls else ())
        plans.append(EtcdMemberPlan(node=n.name, ip=ip, token=c.etcd_token, initial_cluster=initial,
                                    data_dir=data_dir, argv=argv))
    return plans


def peer_url(inventory: Inventory, ip: str) -> str:
    return _url(ip, inventory.cluster.etcd_peer_port, "https" if inventory.cluster.etcd_tls else "http")


def join_plan(plan: EtcdMemberPlan, existing: list[tuple[str, str]]) -> EtcdMemberPlan:
    """``plan`` for a member added to a running cluster (after the member-add call): the initial cluster is
    the running members (name, peer URL) plus this one, and its state ``existing``."""
    me = (plan.node, _flag_value(plan.argv, "--initial-advertise-peer-urls") or "")
    initial = ",".join(f"{name}={url}" for name, url in [*(m for m in existing if m[0] != plan.node), me])
    argv = list(plan.argv)
    argv[argv.index("--initial-cluster") + 1] = initial
    argv[argv.index("--initial-cluster-state") + 1] = "existing"
    return EtcdMemberPlan(node=plan.node, ip=plan.ip, token=plan.token, initial_cluster=initial,
                          data_dir=plan.data_dir, argv=tuple(argv), log=plan.log)


# Read by etcd only when it creates its data dir: a running member started before the cluster grew (or one
# that joined it) differs there and is still the planned member.
BOOTSTRAP_FLAGS = ("--initial-cluster", "--initial-cluster-state")


def parse_flags(argv: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``--flag value`` / ``--flag=value`` / bare ``--flag`` -> {flag: value}; argv[0] is skipped."""
    flags: dict[str, str] = {}
    args = list(argv[1:])
    i = 0
    while i < len(args):
        tok = args[i]
        if tok.startswith("-"):
            name = "--" + tok.lstrip("-")
            if "=" in name:
                name, _, value = name.partition("=")
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
                i += 1
            else:
                value = "true"
            flags[name] = value
        i += 1
    return flags


def _flag_value(argv: tuple[str, ...], flag: str) -> str | None:
    return parse_flags(argv).get(flag)


def flag_differences(running: list[str] | tuple[str, ...], plan: EtcdMemberPlan) -> list[str]:
    """Human lines for every flag where a running etcd differs from the plan (empty: same)."""
    have, want = parse_flags(running), parse_flags(plan.argv)
    out = []
    for flag in sorted((set(have) | set(want)) - set(BOOTSTRAP_FLAGS)):
        if have.get(flag) != want.get(flag):
            out.append(f"{flag}: running {have.get(flag, '(unset)')!r}, planned {want.get(flag, '(unset)')!r}")
    return out


TLS_FLAG_NAMES = {f for f in tls_flags() if f.startswith("--")}


def _without_transport(flags: dict[str, str]) -> dict[str, str]:
    """Flags with the TLS ones dropped and https URLs written as http (to compare across a TLS switch)."""
    return {k: v.replace("https://", "http://") for k, v in flags.items() if k not in TLS_FLAG_NAMES}


def transport_only(running: list[str] | tuple[str, ...], plan: EtcdMemberPlan) -> bool:
    """True when a running etcd is this plan's member but for TLS (plaintext while TLS is wanted, or back)."""
    have, want = parse_flags(running), parse_flags(plan.argv)
    return have != want and _without_transport(have) == _without_transport(want)


def marker_transport_only(marker_text: str | None, plan: EtcdMemberPlan) -> bool:
    """True when a data dir's marker names this plan's member but with the other URL scheme."""
    try:
        found = json.loads(marker_text or "")
    except ValueError:
        return False
    want = plan.marker()
    return (isinstance(found, dict) and found.get("name") == want["name"] and found.get("token") == want["token"]
            and _scheme(found.get("initial_cluster")) != _scheme(want["initial_cluster"]))


def _scheme(initial_cluster: object) -> str:
    """The URL scheme a marker's initial cluster was made with ("https" or "http")."""
    return "https" if "https://" in str(initial_cluster or "") else "http"


def marker_matches(marker_text: str | None, plan: EtcdMemberPlan) -> tuple[bool, str]:
    """Does a data dir's marker say it belongs to this plan's cluster? (ok, what was found)."""
    if not marker_text:
        return False, "no overlay-tui marker"
    try:
        found = json.loads(marker_text)
    except ValueError:
        return False, f"an unreadable marker {MARKER_NAME}"
    if not isinstance(found, dict):
        return False, f"an unreadable marker {MARKER_NAME}"
    want = plan.marker()
    # the initial cluster's members are not compared: they change as the cluster grows (a joined member
    # records its own); its transport is: a plaintext member's data dir is migrated, never just restarted
    diffs = [f"{k} {found.get(k)!r}" for k in ("name", "token") if found.get(k) != want[k]]
    if diffs:
        return False, "a member of another cluster (" + ", ".join(diffs) + ")"
    if _scheme(found.get("initial_cluster")) != _scheme(want["initial_cluster"]):
        return False, f"a member of this cluster made with {_scheme(found.get('initial_cluster'))} URLs"
    return True, "a member of this cluster"
