"""Take a node out of the cluster: its etcd member, its store config, its probe, its inventory entry.

Order (each step safe to run again): refuse first when the node is unknown, the last one, or holds an
etcd member whose removal would leave the cluster without quorum; then remove its probe container,
remove its member with etcd's member-remove API and stop its etcd (the data dir is moved aside, never
deleted), take cluster-store, cluster-advertise and cluster-store-opts out of its daemon.json and restart its dockerd (so it
leaves the store and the gossip; its images, containers and volumes stay), take its entry out of Docker's
node list in the store, and last drop its ``[[node]]`` table from the inventory file. A node
that does not answer SSH is removed from etcd and the inventory; what could not be done there is said.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import time
from pathlib import Path

from core.access import WriteGuard
from core.dockerd.clients import DockerNodes
from core.dockerd.probes import LABEL
from core.dockerd.store import (
    BACKUP,
    DAEMON_JSON,
    STORE_KEYS,
    STORE_OPTS,
    WRITE_SCRIPT,
    forget_in_store,
    node_facts,
    restart_docker,
    wait_for_store,
)
from core.errors import OverlayError, UsageError
from core.etcd.health import removal_refusal
from core.etcd.plan import member_data_dir
from core.etcd.service import EtcdService
from core.model import Inventory
from core.nodes.address import UnderlayAddresses
from core.ssh import SSHPool


def drop_node_table(text: str, name: str) -> str:
    """The inventory text without the ``[[node]]`` table whose name is ``name`` (comments and the rest kept)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.strip() == "[[node]]"]
    for k, start in enumerate(starts):
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
        if k + 1 < len(starts):
            end = min(end, starts[k + 1])
        block = "".join(lines[start:end])
        if re.search(rf'^\s*name\s*=\s*["\']{re.escape(name)}["\']\s*$', block, re.M):
            while start > 0 and not lines[start - 1].strip():      # the blank line before it goes too
                start -= 1
            return "".join(lines[:start] + lines[end:])
    raise UsageError(f"no [[node]] table named {name!r} in the inventory file")


class NodeRemoval:
    """``remove(name)``: see the module docstring."""

    def __init__(self, inventory: Inventory, pool: SSHPool, docker: DockerNodes, etcd: EtcdService,
                 guard: WriteGuard, addresses: UnderlayAddresses) -> None:
        self.inventory, self.pool, self.docker, self.etcd, self.guard = inventory, pool, docker, etcd, guard
        self.addresses = addresses

    async def remove(self, name: str) -> list[str]:
        """Remove node ``name`` from the cluster and the inventory; one line per thing done."""
        self.guard.require("removing a node")
        names = [n.name for n in self.inventory.nodes]
        if name not in names:
            raise UsageError(f"unknown node {name!r}; the inventory has {', '.join(names)}")
        if len(names) == 1:
            raise UsageError(f"{name} is the only node of the inventory: there would be no cluster left")
        text = Path(self.inventory.path).read_text()
        new_text = drop_node_table(text, name)       # fails before anything changes if the table is not found
        done: list[str] = []
        reachable = True
        try:
            await self.pool.run(name, "true", timeout=10, check=True)
        except OverlayError as e:
            reachable = False
            done.append(f"{name} does not answer SSH ({e}): its probe, etcd and dockerd are left as they are")
        refusal = removal_refusal(name, (await self.etcd.cluster()).members)
        if refusal:
            raise UsageError(f"{refusal}; nothing was changed")
        if reachable:
            done += await self._remove_probe(name)
        member = await self.etcd.remove_member(name)
        if member:
            done.append(f"etcd member {member} of {name} removed (member-remove)")
        if reachable:
            done += await self._stop_etcd(name)
            done += await self._leave_store(name)
        Path(self.inventory.path).write_text(new_text)
        done.append(f"{name} removed from the inventory {self.inventory.path}")
        return done

    async def _remove_probe(self, name: str) -> list[str]:
        def rm(cl) -> list[str]:
            out = []
            for c in cl.api.containers(all=True, filters={"label": LABEL}):
                cl.api.remove_container(c["Id"], force=True)
                out.append((c.get("Names") or ["?"])[0].lstrip("/"))
            return out
        try:
            removed = await self.docker.call(name, rm)
        except OverlayError as e:
            return [f"{name}: probe not removed ({e})"]
        return [f"{name}: probe container {c} removed" for c in removed] or [f"{name}: no probe container"]

    async def _stop_etcd(self, name: str) -> list[str]:
        data = member_data_dir(self.inventory.cluster.etcd_data_dir, name)
        aside = f"{data}.removed-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        script = ("me=$(readlink /proc/$$/ns/net); for p in $(pgrep -x etcd); do "
                  '[ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] && kill $p && echo "stopped $p"; done; '
                  "for i in $(seq 50); do pgrep -x etcd >/dev/null || break; sleep 0.1; done; "
                  f"if [ -d {shlex.quote(data)} ]; then mv {shlex.quote(data)} {shlex.quote(aside)} && echo moved; fi; true")
        res = await self.pool.run(name, script, timeout=30)
        out = []
        if "stopped" in res.stdout:
            out.append(f"{name}: etcd stopped")
        if "moved" in res.stdout:
            out.append(f"{name}: etcd data dir moved aside to {aside}")
        return out

    async def _leave_store(self, name: str) -> list[str]:
        try:
            facts = await node_facts(self.docker, self.pool, name)
        except OverlayError as e:
            return [f"{name}: dockerd left as it is ({e})"]
        cfg = dict(facts.daemon_json or {})
        keys = [k for k in (*STORE_KEYS, STORE_OPTS) if k in cfg]
        if not keys and not facts.cluster_store:
            return [f"{name}: dockerd uses no cluster store"]
        advertise = str(cfg.get("cluster-advertise") or facts.cluster_advertise or "")
        for k in keys:
            cfg.pop(k)
        # the same careful write as the runbook's (no symlink, mode kept, original backed up once, fsynced)
        await self.pool.run(name, WRITE_SCRIPT, input=json.dumps(cfg, indent=2) + "\n", check=True)
        out = [f"{name}: {', '.join(keys) or 'no store keys'} taken out of {DAEMON_JSON} (original kept as {BACKUP})"]
        if facts.running:
            pid = await restart_docker(self.pool, name, facts)
            await wait_for_store(self.docker, self.pool, name, "", facts.systemd, pid)
            out.append(f"{name}: dockerd restarted without a cluster store (local scope; its images, containers "
                       "and volumes kept)")
        await self.docker.reset(name)
        if advertise:    # its entry in Docker's node list would live on for its TTL: a joining dockerd could pick it
            rest = dataclasses.replace(self.inventory, nodes=tuple(n for n in self.inventory.nodes if n.name != name))
            ips = await self.addresses.all(rest.nodes)
            out.append(f"{name}: " + await forget_in_store(self.pool, rest, ips, [advertise]))
        return out
