"""Each node's facts for the doctor, in one SSH round trip (read-only commands only).

The script prints ``@@section`` headers followed by what a command printed; :func:`core.doctor.parse.sections`
splits it. A missing tool leaves its section empty; nothing here changes the node.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from core.doctor import parse

ETCD_LOG = "/var/log/etcd.log"
DOCKERD_LOG = "/var/log/dockerd.log"
FATAL_GREP = r'"level":"(fatal|panic)"| C \| |level=fatal|panic: '


def facts_script(underlay_ip: str) -> str:
    """The one command gathering a node's facts; ``underlay_ip`` picks the interface to look at."""
    ip = shlex.quote(underlay_ip)
    return "; ".join([
        "echo @@hostname; hostname",
        "echo @@kernel; uname -r",
        "echo @@modules; " + parse.MODULES_SCRIPT,
        "echo @@links; ip -o link show 2>&1",
        "echo @@addrs; ip -o addr show 2>&1",
        "echo @@bridges; ip -o link show type bridge 2>/dev/null",
        "echo @@listen; ss -ltnH 2>/dev/null",
        "echo @@forward; iptables -S FORWARD 2>&1",
        "echo @@etcd; p=$(pgrep -xo etcd); if [ -n \"$p\" ]; then tr '\\0' '\\n' < /proc/$p/cmdline; echo; "
        "echo @@etcdenv; tr '\\0' '\\n' < /proc/$p/environ | grep '^ETCD_'; fi",
        "echo @@etcdversion; etcd --version 2>/dev/null | head -n 1",
        f"echo @@etcdfatal; tail -n 5000 {ETCD_LOG} 2>/dev/null | grep -a -E {shlex.quote(FATAL_GREP)} | tail -n 1",
        "echo @@dockerd; p=$(cat /var/run/docker.pid 2>/dev/null || pgrep -xo dockerd); "
        "if [ -n \"$p\" ]; then tr '\\0' '\\n' < /proc/$p/cmdline; echo; fi",
        f"echo @@serf; {{ if [ -f {DOCKERD_LOG} ]; then tail -n 20000 {DOCKERD_LOG}; "
        "else journalctl -u docker -o cat -n 20000 --no-pager 2>/dev/null; fi; } | grep -a 'serf: EventMember' | tail -n 200",
        f"IF=$(ip -o addr show | awk -v a={ip} '{{split($4, x, \"/\"); if (x[1] == a) print $2}}' | head -n 1)",
        "echo @@iface; echo \"$IF\"",
        "echo @@driver; if [ -n \"$IF\" ]; then ethtool -i \"$IF\" 2>/dev/null | sed -n 's/^driver: //p'; "
        "readlink \"/sys/class/net/$IF/device/driver\" 2>/dev/null; fi",
        "echo @@offload; if [ -n \"$IF\" ]; then ethtool -k \"$IF\" 2>/dev/null; fi",
        "echo @@end",
    ])


@dataclass
class NodeFacts:
    """What one node said, by section (see :func:`facts_script`), plus the underlay IP asked about."""

    node: str
    ip: str
    sections: dict[str, list[str]] = field(default_factory=dict)

    def lines(self, name: str) -> list[str]:
        return self.sections.get(name, [])

    def first(self, name: str) -> str:
        return next((ln.strip() for ln in self.lines(name) if ln.strip()), "")

    @property
    def hostname(self) -> str:
        return self.first("hostname")

    @property
    def iface(self) -> str:
        return self.first("iface")

    @property
    def driver(self) -> str:
        return self.first("driver").rsplit("/", 1)[-1]

    @property
    def etcd_argv(self) -> list[str]:
        return [ln for ln in self.lines("etcd") if ln.strip()]

    @property
    def runs_etcd(self) -> bool:
        return bool(self.etcd_argv)

    @property
    def etcd_flags(self) -> dict[str, str]:
        return parse.etcd_flags(self.etcd_argv[1:], self.lines("etcdenv"))

    @property
    def dockerd_argv(self) -> list[str]:
        return [ln for ln in self.lines("dockerd") if ln.strip()]
