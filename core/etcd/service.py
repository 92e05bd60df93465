"""The etcd part of the live service: plan, apply, read, browse, watch.

``EtcdService.apply(force=True)`` stops an etcd running with other flags and wipes a data dir that
belongs to another cluster: front doors must confirm with the operator before passing it.

With ``[cluster] etcd_tls`` (the default) apply first makes or renews the cluster's PKI on this
machine (:mod:`core.pki.cluster`) and installs each node's certificates and /etc/etcd/etcdctl.env
before its member starts. :meth:`EtcdService.cluster` says in ``warning`` when the store is open
to the underlay: plaintext by choice (``etcd_tls = false``), or a plaintext cluster of an earlier
apply while TLS is wanted (read over http then, so the console still shows it).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core import checks
from core.access import WriteGuard
from core.errors import EtcdError, OverlayError, UsageError
from core.etcd.decide import EtcdAction
from core.etcd.health import after_removal, no_quorum_after_removal, quorum_kept
from core.etcd.launch import apply_cluster
from core.etcd.plan import EtcdMemberPlan, plan_cluster
from core.etcd.read import RPC_ERRORS, Endpoint, EtcdReader, rpc_error_text
from core.etcd.sizing import sizing
from core.etcd.tls import OPEN_STORE_WARNING, PLAINTEXT_WHILE_TLS_WANTED, push
from core.etcd.watch import EventQueue, KeyWatchThread, diff_keys, diff_members
from core.model import ClusterEvent, EtcdCluster, Inventory, KeyEntry
from core.nodes.address import UnderlayAddresses
from core.pki.cluster import ClusterPKI
from core.ssh import SSHPool

POLL_SECONDS = 2.0


@dataclass
class EtcdApplied:
    """What :meth:`EtcdService.apply` did per node, and the cluster it left."""

    actions: list[EtcdAction]
    cluster: EtcdCluster


class EtcdService:
    """Etcd methods of the live service, over one reader (python-etcd3 through SSH forwards)."""

    def __init__(self, inventory: Inventory, pool: SSHPool, addresses: UnderlayAddresses, reader: EtcdReader,
                 guard: WriteGuard, pki: ClusterPKI) -> None:
        self.inventory, self.pool, self.addresses, self.reader, self.guard = inventory, pool, addresses, reader, guard
        self.pki = pki

    async def endpoints(self, tls: bool | None = None) -> list[Endpoint]:
        """Each member node's client URL (see :mod:`core.etcd.sizing`), reached through its SSH connection
        (TLS as the inventory says)."""
        members = sizing(self.inventory).members
        ips = await self.addresses.all(members)
        port = self.inventory.cluster.etcd_client_port
        tls = self.inventory.cluster.etcd_tls if tls is None else tls
        return [Endpoint(via=n.name, host=ips[n.name], port=port, tls=tls) for n in members]

    async def plan(self) -> list[EtcdMemberPlan]:
        """Each node's member as the tutorial starts it (``.node``, ``.command`` for printing)."""
        ips = await self.addresses.all(self.inventory.nodes)
        return plan_cluster(self.inventory, ips)

    async def cluster(self) -> EtcdCluster:
        """Members, per-member status and health, and cluster-health lines; never hangs."""
        try:
            endpoints = await self.endpoints()
        except OverlayError as e:
            return EtcdCluster(members=[], healthy=False, summary=[str(e)], error=str(e))
        cluster = await self.reader.cluster(endpoints)
        if not self.inventory.cluster.etcd_tls:
            cluster.tls, cluster.warning = False, OPEN_STORE_WARNING
            return cluster
        if _answered(cluster):
            cluster.tls = True
            # every node's certificates, also those of nodes without a member (their dockerd uses them)
            due = await asyncio.to_thread(self.pki.due, await self.addresses.all(self.inventory.nodes))
            if due:
                cluster.warning = ("etcd's TLS certificates need renewing (" + "; ".join(due[:3])
                                   + ("; ..." if len(due) > 3 else "") + "): `overlay-tui runbook apply` issues "
                                   "and installs them (members load new certificates without a restart)")
            return cluster
        plain = await self.reader.cluster(await self.endpoints(tls=False))
        if not _answered(plain):
            return cluster
        plain.tls, plain.warning = False, PLAINTEXT_WHILE_TLS_WANTED
        return plain

    async def apply(self, force: bool = False, timeout: float = 40.0) -> EtcdApplied:
        """Adopt or start every planned member, then wait until the cluster is healthy.

        Refuses (nothing changed) when a node runs etcd with other flags or holds a data dir of
        another cluster; ``force=True`` replaces and wipes them (confirm with the operator first).
        """
        self.guard.require("starting etcd")
        plans = await self.plan()
        install = None
        if self.inventory.cluster.etcd_tls:
            # every node gets certificates: a node without a member (core.etcd.sizing) still needs the CA
            # and its client pair, for its dockerd's cluster-store-opts
            ips = await self.addresses.all(self.inventory.nodes)
            ensured = await asyncio.to_thread(self.pki.ensure, ips)
            members = {p.node for p in plans}
            clients = [n.name for n in self.inventory.nodes if n.name not in members]
            await asyncio.gather(*(push(self.pool, n, ensured.nodes[n], plans[0].client_url) for n in clients))

            async def install(plan: EtcdMemberPlan) -> None:
                await push(self.pool, plan.node, ensured.nodes[plan.node], plan.client_url)
        actions, cluster = await apply_cluster(self.pool, plans, self.cluster, force=force, timeout=timeout,
                                               install=install, add_member=self._add_member)
        return EtcdApplied(actions, cluster)

    async def _add_member(self, peer_url: str) -> None:
        """etcd's member-add API (a member that joins with ``--initial-cluster-state existing``).

        etcd refuses a member-add until every member has been connected for 5 s (its strict reconfig
        check, "unhealthy cluster"): just after another member joined it is asked again, for up to 30 s.
        """
        deadline = time.monotonic() + 30.0
        while True:
            ep = await self.reader.first_ready(await self.endpoints())
            try:
                async with self.reader.using(ep) as client:
                    await self.reader.thread(client.add_member, [peer_url])
                return
            except RPC_ERRORS as e:
                if time.monotonic() > deadline:
                    raise EtcdError(f"member-add of {peer_url} failed: {rpc_error_text(e)}") from None
            await asyncio.sleep(1.0)

    async def remove_member(self, node: str) -> str | None:
        """etcd's member-remove API for ``node``'s member; refuses when the cluster would lose its quorum.

        Returns the removed member's id (None: the node holds no member).
        """
        self.guard.require("removing an etcd member")
        cluster = await self.cluster()
        member = next((m for m in cluster.members if m.name == node), None)
        if member is None:
            return None
        healthy, remaining = after_removal(node, cluster.members) or (0, 0)
        if not remaining:
            raise UsageError(f"{node} holds the last etcd member: removing it would end the cluster; nothing was changed")
        if not quorum_kept(healthy, remaining) or not any(m.leader for m in cluster.members):
            raise UsageError(f"{no_quorum_after_removal(node, healthy, remaining)}; nothing was changed")
        endpoints = [ep for ep in await self.endpoints() if ep.via != node] or await self.endpoints()
        ep = await self.reader.first_ready(endpoints)
        try:
            async with self.reader.using(ep) as client:
                await self.reader.thread(client.remove_member, int(member.id, 16))
        except RPC_ERRORS as e:
            raise EtcdError(f"member-remove of {node} ({member.id}) failed: {rpc_error_text(e)}") from None
        return member.id

    async def keys(self, source: str = "v3", prefix: str = "") -> list[KeyEntry]:
        """v3 keys (``prefix`` "" = all), or Docker's v2 tree (``prefix`` "" = /docker)."""
        checks.key_source(source)
        try:
            return await self._keys(await self.endpoints(), source, prefix)
        except EtcdError as e:
            if not self.inventory.cluster.etcd_tls:
                raise
            failed = e
        try:                    # a plaintext cluster of an earlier apply (the pane says so): still browsable
            return await self._keys(await self.endpoints(tls=False), source, prefix)
        except EtcdError:
            raise failed from None

    async def _keys(self, endpoints: list[Endpoint], source: str, prefix: str) -> list[KeyEntry]:
        if source == "v3":
            return await self.reader.keys_v3(endpoints, prefix)
        return await self.reader.keys_v2(endpoints, prefix or "/docker")

    async def watch(self) -> AsyncIterator[ClusterEvent]:
        """Members (added/removed/changed), v3 key puts/deletes, and v2 (Docker) key changes.

        Also kind "watch" events: "started" (value: the member watched) once the v3 watch is in place,
        "error" when it broke (it resumes on another member from the last revision seen, so no put
        is lost) or a poll failed.
        """
        out = EventQueue()
        tasks = [asyncio.create_task(self._watch_v3(out)), asyncio.create_task(self._poll_cluster(out))]
        for t in tasks:                  # a bug in either ends the stream with its exception, not silently
            t.add_done_callback(lambda t: out.fail(t.exception()) if not t.cancelled() and t.exception() else None)
        try:
            while True:
                yield await out.get()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_v3(self, out: EventQueue) -> None:
        """Keep one v3 watch running, moving to another member when the one watched fails."""
        loop = asyncio.get_running_loop()
        reader = self.reader
        revision = 0
        while True:
            watcher = client = None
            try:
                ep = await reader.first_ready(await self.endpoints())
                client = await reader.dedicated_client(ep)      # its own channel: reads never close it
                watcher = KeyWatchThread(client, loop, out, start_revision=revision + 1 if revision else 0,
                                         where=f"{ep.via} ({ep.url})")
                watcher.start()
                await watcher.ended.wait()
            except OverlayError as e:
                out.put_nowait(ClusterEvent("watch", "error", "v3", str(e)))
            finally:
                if watcher is not None:
                    await reader.thread(watcher.cancel)
                    revision = max(revision, watcher.revision)
                if client is not None:
                    client.close()
            await asyncio.sleep(POLL_SECONDS)

    async def _poll_cluster(self, out: EventQueue) -> None:
        members: dict = {}
        v2: dict | None = None
        while True:
            try:
                cluster = await self.cluster()
                members, events = diff_members(members, cluster)
                for ev in events:
                    out.put_nowait(ev)
                try:
                    entries = await self.keys("v2")
                except OverlayError:
                    entries = None
                if entries is not None:
                    baseline = v2 is None
                    v2, events = diff_keys(v2 or {}, entries, "v2")
                    for ev in [] if baseline else events:
                        out.put_nowait(ev)
            except OverlayError as e:    # a poll failure is reported, the stream goes on
                out.put_nowait(ClusterEvent("watch", "error", "poll", str(e)))
            await asyncio.sleep(POLL_SECONDS)


def _answered(cluster: EtcdCluster) -> bool:
    """Did any member answer (a member list came back)?"""
    return any(m.id for m in cluster.members)
