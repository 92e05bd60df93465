"""Networks across the cluster: list and merge per node, create, delete, and wait for convergence.

Each node's daemon is asked through the SDK (the list, plus an inspect of each overlay network:
the list endpoint leaves ``Containers`` empty), within a time budget per node (in classic mode a
daemon whose etcd lost quorum answers each call only after its store timeout); the answers are
merged by network ID into :class:`core.model.NetworkInfo`
(``nodes`` = where the network is visible, ``containers`` = what each node runs on it). VNIs come
from :mod:`core.dockerd.vni`. Convergence of a new overlay network is polled about every 50 ms on
every node concurrently: the same ID with scope ``global`` everywhere.
"""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import time

import docker.errors
import docker.types

from core import checks
from core.askings import NodeAskings
from core.dockerd.clients import DockerNodes
from core.dockerd.validation import require_valid
from core.dockerd.vni import ClassicVniReader, swarm_vni
from core.errors import DockerError, OverlayError, UsageError
from core.model import ContainerInfo, ConvergeResult, NetworkInfo, NetworkListing
from core.pki.cluster import context_for

POLL_INTERVAL = 0.05
NODE_BUDGET = 8.0          # seconds one node may take to list its networks before it is reported missing
#: seconds a listing waits on a silent node (its last asking failed after at least this long); an asking not
#: answered by then goes on, within NODE_BUDGET, and the next listing shares it. So a silent node costs the
#: refreshes after its first timeout this much, not the whole budget. A node that failed at once (its Docker
#: down: refused) is not silent: it is waited for in full.
SILENT_PATIENCE = 1.0


def _inspect(cl, net_id: str) -> dict | None:
    try:
        return cl.api.inspect_network(net_id)
    except docker.errors.NotFound:          # removed between list and inspect
        return None


def _containers(node: str, attrs: dict) -> list[ContainerInfo]:
    out = []
    for cid, c in sorted((attrs.get("Containers") or {}).items()):
        if cid.startswith("ep-"):            # a remote endpoint some engines list: its own node reports it
            continue
        ip = (c.get("IPv4Address") or "").split("/")[0] or None
        out.append(ContainerInfo(name=c.get("Name", cid[:12]), node=node, network=attrs.get("Name", ""),
                                 ip=ip, mac=c.get("MacAddress") or None))
    return out


def _subnet(attrs: dict) -> str | None:
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    return next((c["Subnet"] for c in configs if c.get("Subnet")), None)


def _named(nets: list[NetworkInfo], name: str) -> list[NetworkInfo]:
    """The networks whose name (or full/short ID, 12 characters at least) is ``name``."""
    return [n for n in nets if n.name == name] or [n for n in nets if len(name) >= 12 and n.id.startswith(name)]


def merge_networks(per_node: dict[str, list[dict]], vnis: dict[str, int]) -> list[NetworkInfo]:
    """One NetworkInfo per network ID, nodes in inventory order (the order of ``per_node``)."""
    merged: dict[str, NetworkInfo] = {}
    for node, nets in per_node.items():
        for a in nets:
            info = merged.get(a["Id"])
            if info is None:
                info = merged[a["Id"]] = NetworkInfo(
                    id=a["Id"], name=a.get("Name", ""), driver=a.get("Driver", ""), scope=a.get("Scope", ""),
                    subnet=_subnet(a), vni=vnis.get(a["Id"]) or swarm_vni(a), nodes=[],
                    attachable=bool(a.get("Attachable")))
            info.nodes.append(node)
            info.containers.extend(_containers(node, a))
    return sorted(merged.values(), key=lambda n: (n.driver != "overlay", n.name, n.id))


class OverlayNetworks:
    """Networks of every node of an inventory, read and changed through :class:`DockerNodes`."""

    def __init__(self, docker: DockerNodes, pool, inventory) -> None:
        self.docker, self.pool, self.inventory = docker, pool, inventory
        self.vni_reader = ClassicVniReader(pool, context_for(inventory), docker.executor)  # https when etcd runs TLS
        self._stores: dict[str, str] = {}      # node -> its etcd:// ClusterStore, once seen
        self.askings: NodeAskings[tuple[str, list[dict]]] = NodeAskings(share=False)   # per node, its listing

    def forget_stores(self) -> None:
        self._stores.clear()

    async def _cluster_store(self, node: str) -> str:
        """The node's ClusterStore; an etcd one is remembered (a dockerd restart resets it)."""
        known = self._stores.get(node)
        if known:
            return known
        store = (await self.docker.call(node, lambda cl: cl.info())).get("ClusterStore") or ""
        if store.startswith("etcd://"):
            self._stores[node] = store
        return store

    async def _node(self, node: str) -> tuple[str, list[dict]]:
        """(cluster store, networks) of one node. Overlay networks are inspected (for their containers),
        concurrently; the list endpoint's data is complete for the others."""
        store, summaries = await asyncio.gather(self._cluster_store(node),
                                                self.docker.call(node, lambda cl: cl.api.networks()))
        overlay = [n["Id"] for n in summaries if n.get("Driver") == "overlay"]
        inspected = await asyncio.gather(*(self.docker.call(node, _inspect, i) for i in overlay))
        full = {a["Id"]: a for a in inspected if a}
        if len(full) < len(overlay):
            # Docker 20.10's classic store has answered "not found" for a network it had just listed (see
            # Probes.start): ask once more before taking it as removed between the list and the inspect
            again = await asyncio.gather(*(self.docker.call(node, _inspect, i) for i in overlay if i not in full))
            full.update({a["Id"]: a for a in again if a})
        return store, [full.get(n["Id"], n) for n in summaries if n["Id"] in full or n["Id"] not in overlay]

    async def _node_within_budget(self, node: str) -> tuple[str, list[dict]]:
        try:
            return await asyncio.wait_for(self._node(node), NODE_BUDGET)
        except TimeoutError:
            raise DockerError(f"{node}: Docker did not list its networks within {NODE_BUDGET:g} s (in classic "
                              "mode every network call waits on the cluster store: has etcd lost its quorum?)") from None

    async def every(self) -> list[NetworkInfo]:
        """Every network of every reachable node, merged; raise only when no node answers."""
        return (await self.listing()).networks

    async def _answers(self, names: list[str]) -> list[tuple[str, list[dict]] | BaseException]:
        """Each node's answer (or why not). A silent node is waited for SILENT_PATIENCE (its asking goes on for
        the next listing); the others up to NODE_BUDGET."""
        asks = {n: self.askings.ask(n, functools.partial(self._node_within_budget, n), SILENT_PATIENCE)
                for n in names}
        patient = [f for n, f in asks.items() if n not in self.askings.silent]
        if patient:
            await asyncio.wait(patient)                   # each ends within NODE_BUDGET by itself
        late = [f for f in asks.values() if not f.done()]
        if late:
            await asyncio.wait(late, timeout=SILENT_PATIENCE)
        out: list[tuple[str, list[dict]] | BaseException] = []
        for n, f in asks.items():
            if not f.done():
                out.append(DockerError(f"{n}: Docker has not listed its networks yet (it did not answer the last "
                                       f"listing either; it is given {NODE_BUDGET:g} s a time)"))
            else:
                out.append(f.exception() or f.result())
        return out

    async def close(self) -> None:
        """Stop the listings still in flight (one replaced by a newer one ends by itself, within NODE_BUDGET)."""
        await self.askings.close()

    async def listing(self) -> NetworkListing:
        """:meth:`every`, with why a node's networks (or the VNIs) are missing (node or "vni" -> sentence)."""
        names = [n.name for n in self.inventory.nodes]
        answers = await self._answers(names)
        per_node: dict[str, list[dict]] = {}
        stores: list[tuple[str, str]] = []      # (node, its etcd:// cluster store): where VNIs can be read
        problems: dict[str, str] = {}
        for name, ans in zip(names, answers):
            if isinstance(ans, OverlayError):
                problems[name] = str(ans)
            elif isinstance(ans, BaseException):
                raise ans
            else:
                per_node[name] = ans[1]
                if ans[0].startswith("etcd://"):
                    stores.append((name, ans[0]))
        if not per_node:
            raise DockerError("no node's Docker answered: " + "; ".join(problems.values()))
        return NetworkListing(merge_networks(per_node, await self._classic_vnis(stores, problems)), problems)

    async def _classic_vnis(self, stores: list[tuple[str, str]], problems: dict[str, str]) -> dict[str, int]:
        """VNIs from the first node whose etcd member answers (one member down must not hide them)."""
        failures = []
        for node, store in stores:
            try:
                return await self.vni_reader.vnis(node, store)
            except OverlayError as e:
                failures.append(str(e))
        if failures:
            problems["vni"] = "VNIs unknown: " + "; ".join(failures)
        return {}

    async def find(self, name: str) -> list[NetworkInfo]:
        """Networks whose name (or full/short ID) is ``name``."""
        return _named(await self.every(), name)

    def _check_node(self, node: str | None) -> str:
        return self.inventory.nodes[0].name if node is None else checks.node(self.inventory, node).name

    async def create(self, name: str, subnet: str | None = None, attachable: bool = True,
                     node: str | None = None, timeout: float = 30.0) -> ConvergeResult:
        """Create an overlay network on ``node`` (default: the first) and wait until every node sees it.

        The runbook's network (inventory ``[cluster] network``) defaults to ``network_subnet``; any
        other network without ``subnet`` gets Docker's choice.
        """
        cluster = self.inventory.cluster
        if subnet is None and name == cluster.network and cluster.network_subnet:
            subnet = cluster.network_subnet
        require_valid(name, subnet)                   # bad input fails before any node is asked
        node = self._check_node(node)
        existing, underlay = await asyncio.gather(self.every(), self._addresses() if subnet else _nothing())
        subnet = require_valid(name, subnet, existing)
        if subnet is not None:
            refuse_underlay_overlap(ipaddress.IPv4Network(subnet), underlay)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)]) if subnet else None
        try:
            res = await self.docker.call(node, lambda cl: cl.api.create_network(
                name, driver="overlay", ipam=ipam, attachable=attachable, check_duplicate=True))
        except DockerError as e:
            raise DockerError(_create_hint(name, node, str(e))) from None
        return await self.converge(name, res["Id"], timeout)

    async def _addresses(self) -> list[tuple[str, str, ipaddress.IPv4Interface]]:
        """(node, interface, address) of every IPv4 address on the nodes (loopback aside), concurrently;
        a node that does not answer gives none (creating the network fails there anyway)."""
        async def one(node: str) -> list[tuple[str, str, ipaddress.IPv4Interface]]:
            try:
                res = await self.pool.run(node, "ip -o -4 addr show", timeout=10)
            except OverlayError:
                return []
            return parse_addresses(node, res.stdout)
        return [a for per in await asyncio.gather(*(one(n.name) for n in self.inventory.nodes)) for a in per]

    async def converge(self, name: str, net_id: str, timeout: float = 30.0) -> ConvergeResult:
        """Poll every node (~50 ms) until each shows ``net_id`` with scope global; the time it took."""
        names = [n.name for n in self.inventory.nodes]
        t0 = time.monotonic()
        seen: dict[str, bool] = {n: False for n in names}
        while True:
            pending = [n for n in names if not seen[n]]
            found = await asyncio.gather(*(self._sees(n, net_id) for n in pending))
            seen.update(zip(pending, found))
            elapsed = time.monotonic() - t0
            if all(seen.values()) or elapsed >= timeout:
                return ConvergeResult(network=name, id=net_id, seconds=round(elapsed, 3), nodes=seen)
            await asyncio.sleep(POLL_INTERVAL)

    async def _sees(self, node: str, net_id: str) -> bool:
        def inspect(cl) -> bool:
            try:
                a = cl.api.inspect_network(net_id)
            except docker.errors.NotFound:
                return False
            return a.get("Id") == net_id and a.get("Scope") == "global"
        try:
            return await self.docker.call(node, inspect)
        except DockerError:
            return False

    async def delete(self, name: str, timeout: float = 30.0) -> float:
        """Remove an overlay network (refused while containers are attached); wait until it is gone everywhere."""
        listing = await self.listing()
        silent = [n.name for n in self.inventory.nodes if n.name in listing.problems]
        unchecked = (f" ({', '.join(silent)} did not answer, so what runs there is not listed)"
                     if silent else "")
        found = [n for n in _named(listing.networks, name) if n.driver == "overlay"]
        if not found:
            raise DockerError(f"no overlay network named {name!r} on any node{unchecked}")
        net = found[0]
        if net.containers:
            who = ", ".join(f"{c.name}@{c.node}" for c in net.containers)
            raise DockerError(f"network {net.name} still has containers attached: {who}{unchecked}; remove them "
                              "first (`overlay-tui network delete NAME --remove-probes` removes overlay-tui's "
                              "probes; other containers: `docker rm -f CONTAINER` on their node)")
        await self.docker.call(net.nodes[0], lambda cl: cl.api.remove_network(net.id))
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            still = await asyncio.gather(*(self._present(n, net.id) for n in net.nodes))
            if not any(still):
                return round(time.monotonic() - t0, 3)
            await asyncio.sleep(POLL_INTERVAL)
        left = [n for n, s in zip(net.nodes, still) if s]
        raise DockerError(f"network {net.name} was removed on {net.nodes[0]} but is still listed on "
                          f"{', '.join(left)} after {timeout:g} s")

    async def _present(self, node: str, net_id: str) -> bool:
        def inspect(cl) -> bool:
            try:
                cl.api.inspect_network(net_id)
                return True
            except docker.errors.NotFound:
                return False
        return await self.docker.call(node, inspect)


async def _nothing() -> list:
    return []


def parse_addresses(node: str, text: str) -> list[tuple[str, str, ipaddress.IPv4Interface]]:
    """``ip -o -4 addr show`` lines -> (node, interface, address); loopback left out."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] == "inet":
            try:
                addr = ipaddress.IPv4Interface(f[3])
            except ValueError:
                continue
            if not addr.ip.is_loopback:
                out.append((node, f[1].split("@")[0], addr))
    return out


def refuse_underlay_overlap(net: ipaddress.IPv4Network, addresses: list[tuple[str, str, ipaddress.IPv4Interface]]) -> None:
    """Refuse a subnet that overlaps a node's underlay address or one of Docker's bridges there (naming it):
    containers on it could no longer reach that range."""
    for node, iface, addr in addresses:
        if net.overlaps(addr.network):
            what = (f"Docker's bridge {iface}" if iface.startswith(("docker", "br-")) else f"the underlay ({iface})")
            raise UsageError(f"subnet {net} overlaps {addr.network} of {what} on {node} (address {addr.ip}); "
                             "choose a subnet that overlaps no address of the nodes")


def _create_hint(name: str, node: str, message: str) -> str:
    text = f"cannot create overlay network {name!r} on {message}"
    if "swarm" in message.lower():
        text += (" (this dockerd has no cluster store: point every node's Docker at the etcd cluster first, "
                 "e.g. `overlay-tui runbook apply`)")
    return text
