"""The lab's wiring: network namespaces, veth links, the switch and the operator's seat.

Topology of lab ``NAME`` with index ``K`` (its /24 inside 198.18.0.0/15, never routed)::

    root namespace            ot-NAME-sw (switch)             ot-NAME-nI (node I)
    otl-<hash> 198.18.K.254 -- seat --+
                                      br0 -- nI ------------- eth0 198.18.K.I/24

Only the seat link lives in the root namespace (its name is derived from a hash of the lab
name, so it fits the 15-character limit); every other link lives in the lab's own namespaces.
There is no default route anywhere in the lab, so nothing can route out of it.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import subprocess
from dataclasses import dataclass

from core.errors import LabError

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
FIRST_INDEX, LAST_INDEX = 1, 191     # 198.18.K.0/24; the cluster overlay uses 198.19.K.0/24 (below the pools)
SEAT_HOST = 254
NETNS_DIR = "/run/netns"


@dataclass(frozen=True)
class LabNames:
    """Every kernel-visible name a lab uses, derived from the lab name alone."""

    lab: str

    @property
    def switch_ns(self) -> str:
        return f"ot-{self.lab}-sw"

    def node_ns(self, i: int) -> str:
        return f"ot-{self.lab}-n{i}"

    @property
    def seat_link(self) -> str:
        return "otl-" + hashlib.sha1(self.lab.encode()).hexdigest()[:8]

    def owns_netns(self, ns: str) -> bool:
        return ns == self.switch_ns or re.fullmatch(re.escape(f"ot-{self.lab}-n") + r"\d+", ns) is not None


def ip(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run iproute2's ``ip``; a failure becomes a :class:`LabError` quoting the command."""
    res = subprocess.run(["ip", *args], input=input, capture_output=True, text=True)
    if check and res.returncode != 0:
        what = " ".join(args) if input is None else f"{' '.join(args)} <<< {input.strip()!r}"
        raise LabError(f"`ip {what}` failed: {res.stderr.strip() or res.returncode}")
    return res


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_id(ns: str) -> tuple[int, int] | None:
    """(device, inode) of a named network namespace, or None if it does not exist."""
    try:
        st = os.stat(os.path.join(NETNS_DIR, ns))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def used_indexes(labs_state: list[dict]) -> set[int]:
    """Lab indexes taken by any lab on this machine, whichever state dir it came from.

    Looks at live addresses and routes in the root namespace, addresses in every named network
    namespace, and the state files we know of (a half-built lab may have no address yet).
    """
    used: set[int] = set()

    def note(cidr: str) -> None:
        try:
            net = ipaddress.ip_interface(cidr).network if "/" in cidr else ipaddress.ip_network(cidr + "/32")
        except ValueError:
            return
        if net.version == 4 and net.overlaps(LAB_RANGE):
            if net.prefixlen <= 16:          # a route over the whole range: stay out of all of it
                used.update(range(0, 256))
            elif net.network_address in ipaddress.ip_network("198.18.0.0/16"):
                first = int(net.network_address) >> 8 & 0xFF
                last = int(net.broadcast_address) >> 8 & 0xFF
                used.update(range(first, last + 1))

    for line in ip("-4", "-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            note(parts[parts.index("inet") + 1])
    for line in ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first not in ("default", "broadcast", "local", "unreachable") and first:
            note(first)
    for ns in list_netns():                 # every named namespace, ours or not
        for line in ip("-n", ns, "-4", "-o", "addr", "show", check=False).stdout.splitlines():
            parts = line.split()
            if "inet" in parts:
                note(parts[parts.index("inet") + 1])
    for st in labs_state:
        if isinstance(st.get("index"), int):
            used.add(st["index"])
    return used


def pick_index(labs_state: list[dict]) -> int:
    used = used_indexes(labs_state)
    for k in range(FIRST_INDEX, LAST_INDEX + 1):
        if k not in used:
            return k
    raise LabError("no free /24 left in 198.18.0.0/16 for another lab: take a lab down first (`overlay-tui lab down --name NAME`)")


def node_address(index: int, i: int) -> str:
    return f"198.18.{index}.{i}"


def seat_address(index: int) -> str:
    return f"198.18.{index}.{SEAT_HOST}"


def build_network(names: LabNames, index: int, count: int) -> None:
    """Create the switch, ``count`` node namespaces wired to it, and the operator's seat."""
    if ip("link", "show", names.seat_link, check=False).returncode == 0:
        raise LabError(f"link {names.seat_link} already exists in the root namespace (another lab, or a leftover): "
                       f"run `overlay-tui lab down --name {names.lab}`")
    root = [f"netns add {names.switch_ns}"] + [f"netns add {names.node_ns(i)}" for i in range(1, count + 1)]
    ip("-batch", "-", input="\n".join(root) + "\n")
    ip("link", "add", names.seat_link, "type", "veth", "peer", "name", "seat", "netns", names.switch_ns)
    ip("addr", "add", f"{seat_address(index)}/24", "dev", names.seat_link)
    ip("link", "set", names.seat_link, "up")
    sw = ["link set lo up", "link add br0 type bridge", "link set br0 up", "link set seat master br0", "link set seat up"]
    for i in range(1, count + 1):
        sw += [f"link add n{i} type veth peer name eth0 netns {names.node_ns(i)}",
               f"link set n{i} master br0", f"link set n{i} up"]
    ip("-n", names.switch_ns, "-batch", "-", input="\n".join(sw) + "\n")
    for i in range(1, count + 1):
        node = ["link set lo up", f"addr add {node_address(index, i)}/24 dev eth0", "link set eth0 up"]
        ip("-n", names.node_ns(i), "-batch", "-", input="\n".join(node) + "\n")


def remove_network(names: LabNames) -> list[str]:
    """Delete the lab's namespaces and seat link (whatever of them exists); return what was removed."""
    removed = []
    if ip("link", "show", names.seat_link, check=False).returncode == 0:
        ip("link", "del", names.seat_link, check=False)
        removed.append(f"link {names.seat_link}")
    for ns in list_netns():
        if names.owns_netns(ns):
            res = ip("netns", "del", ns, check=False)
            if res.returncode != 0:
                raise LabError(f"could not delete namespace {ns}: {res.stderr.strip()}")
            removed.append(f"netns {ns}")
    return removed


def link_json(ns: str | None = None) -> list[dict]:
    args = (["-n", ns] if ns else []) + ["-j", "link", "show"]
    res = ip(*args, check=False)
    return json.loads(res.stdout or "[]") if res.returncode == 0 else []
