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
    raise LabError("no free /24 left in 198.18.0.0/16 for another lab: take a lab down first "
                   "(`overlay-tui lab down --name NAME`)")


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


# ---------------------------------------------------------------- healing and growing

def _links(ns: str) -> dict[str, dict]:
    return {link.get("ifname", ""): link for link in link_json(ns)}


def _is_up(link: dict) -> bool:
    return "UP" in link.get("flags", [])


def ensure_switch(names: LabNames, index: int) -> list[str]:
    """Make sure the switch namespace, its bridge and the operator's seat exist and are up."""
    healed: list[str] = []
    if netns_id(names.switch_ns) is None:
        ip("netns", "add", names.switch_ns)
        healed.append(f"switch namespace {names.switch_ns} was missing: recreated")
    sw = _links(names.switch_ns)
    if "lo" in sw and not _is_up(sw["lo"]):
        ip("-n", names.switch_ns, "link", "set", "lo", "up")
    if "br0" not in sw:
        ip("-n", names.switch_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", names.switch_ns, "link", "set", "br0", "up")
        healed.append("switch bridge br0 was missing: recreated")
    elif not _is_up(sw["br0"]):
        ip("-n", names.switch_ns, "link", "set", "br0", "up")
        healed.append("switch bridge br0 was down: set up")
    if ip("link", "show", names.seat_link, check=False).returncode != 0:
        if "seat" in sw:
            ip("-n", names.switch_ns, "link", "del", "seat", check=False)
        ip("link", "add", names.seat_link, "type", "veth", "peer", "name", "seat", "netns", names.switch_ns)
        ip("addr", "add", f"{seat_address(index)}/24", "dev", names.seat_link)
        ip("link", "set", names.seat_link, "up")
        ip("-n", names.switch_ns, "link", "set", "seat", "master", "br0")
        ip("-n", names.switch_ns, "link", "set", "seat", "up")
        healed.append(f"operator seat link {names.seat_link} was missing: recreated")
    else:
        seat = next(iter(link_json_root(names.seat_link)), {})
        if seat and not _is_up(seat):
            ip("link", "set", names.seat_link, "up")
            healed.append(f"operator seat link {names.seat_link} was down: set up")
        sw = _links(names.switch_ns)
        if "seat" in sw and not _is_up(sw["seat"]):
            ip("-n", names.switch_ns, "link", "set", "seat", "up")
            healed.append("switch port seat was down: set up")
    return healed


def link_json_root(link: str) -> list[dict]:
    res = ip("-j", "link", "show", link, check=False)
    return json.loads(res.stdout or "[]") if res.returncode == 0 else []


def ensure_node_wiring(names: LabNames, index: int, i: int, node: str) -> list[str]:
    """Make sure node ``i``'s namespace is wired to the switch, addressed and up (the namespace exists)."""
    healed: list[str] = []
    ns = names.node_ns(i)
    mine = _links(ns)
    if "lo" in mine and not _is_up(mine["lo"]):
        ip("-n", ns, "link", "set", "lo", "up")
        healed.append(f"{node}: loopback was down: set up")
    if "eth0" not in mine:
        ip("-n", names.switch_ns, "link", "del", f"n{i}", check=False)
        ip("-n", names.switch_ns, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        healed.append(f"{node}: link eth0 was missing: rewired to the switch")
        mine = _links(ns)
    addrs = ip("-n", ns, "-4", "-o", "addr", "show", "dev", "eth0", check=False).stdout
    if f"{node_address(index, i)}/24" not in addrs:
        ip("-n", ns, "addr", "add", f"{node_address(index, i)}/24", "dev", "eth0")
    if not _is_up(mine["eth0"]):
        ip("-n", ns, "link", "set", "eth0", "up")
        if not any(h.startswith(f"{node}: link eth0 was missing") for h in healed):
            healed.append(f"{node}: link eth0 was down: set up")
    port = _links(names.switch_ns).get(f"n{i}", {})
    if port.get("master") != "br0":
        ip("-n", names.switch_ns, "link", "set", f"n{i}", "master", "br0")
    if not _is_up(port):
        ip("-n", names.switch_ns, "link", "set", f"n{i}", "up")
        if not healed:
            healed.append(f"{node}: switch port n{i} was down: set up")
    return healed
