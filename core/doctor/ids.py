"""The doctor's check ids that front doors name (no SDK behind this module: the console may import it)."""
from __future__ import annotations

#: what would block the runbook (things it cannot fix itself): the runbook screen runs these before applying
RUNBOOK_CHECKS = ["ssh", "versions.docker", "versions.etcd", "versions.python", "hostnames", "ports.udp4789",
                  "ports.udp7946", "ports.tcp7946", "mtu.underlay", "mtu.path", "kernel.vxlan", "clock.skew",
                  "etcd.disk", "docker.tcp"]
