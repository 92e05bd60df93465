"""The Docker part of the live service.

Thin async methods over :mod:`core.dockerd.store` (cluster store per node),
:mod:`core.dockerd.networks` (list, create, delete, convergence) and :mod:`core.dockerd.probes` (probe
containers, ping matrix). The SDK clients (:class:`core.dockerd.clients.DockerNodes`, one per node over
SSH) are handed in and closed by the service that made them.
"""
from __future__ import annotations

from core.access import WriteGuard
from core.dockerd import store as docker_store
from core.dockerd.clients import DockerNodes
from core.dockerd.networks import OverlayNetworks
from core.dockerd.probes import Probes
from core.dockerd.store import DockerStoreChange
from core.model import ConvergeResult, Inventory, NetworkInfo, NetworkListing, PingResult
from core.nodes.address import UnderlayAddresses
from core.ssh import SSHPool


class DockerService:
    """Docker methods of the live service: store, networks, probes."""

    def __init__(self, inventory: Inventory, pool: SSHPool, docker: DockerNodes, addresses: UnderlayAddresses,
                 networks: OverlayNetworks, probes: Probes, guard: WriteGuard) -> None:
        self.inventory, self.pool, self.docker, self.addresses = inventory, pool, docker, addresses
        self.overlay_networks, self.probes, self.guard = networks, probes, guard

    # --- the cluster store -------------------------------------------------------------
    async def store_plan(self) -> list[DockerStoreChange]:
        """Per node: what pointing its Docker at the etcd cluster takes ("none" when already done)."""
        return await docker_store.plan(self.docker, self.pool, self.addresses, self.inventory)

    async def store_apply(self) -> list[DockerStoreChange]:
        """Write cluster-store/cluster-advertise into each node's daemon.json and restart Docker where needed."""
        self.guard.require("reconfiguring Docker's cluster store")
        try:
            return await docker_store.apply(self.docker, self.pool, self.addresses, self.inventory)
        finally:
            self.overlay_networks.forget_stores()     # restarted daemons may use another store now

    # --- networks ---------------------------------------------------------------------
    async def networks(self) -> list[NetworkInfo]:
        """Every network of every node, merged by ID (``nodes`` = where visible)."""
        return (await self.listing()).networks

    async def listing(self) -> NetworkListing:
        """The networks, and why some node's networks (or some VNIs) are missing from them."""
        return await self.overlay_networks.listing()

    async def create_network(self, name: str, subnet: str | None = None, attachable: bool = True,
                             node: str | None = None) -> ConvergeResult:
        """Create an overlay network on ``node`` (default: the first) and wait until every node sees it."""
        self.guard.require("creating a network")
        return await self.overlay_networks.create(name, subnet=subnet, attachable=attachable, node=node)

    async def delete_network(self, name: str) -> None:
        """Delete an overlay network (refused while containers are attached) and wait until it is gone."""
        self.guard.require("deleting a network")
        await self.overlay_networks.delete(name)

    # --- probes -------------------------------------------------------------------------
    async def start_probes(self, network: str, again: frozenset[str] = frozenset()) -> dict[str, str]:
        """One probe container per node on ``network`` (idempotent): node -> "started"/"kept"; the probes of the
        nodes in ``again`` are replaced even if they run ("started again")."""
        self.guard.require("starting probe containers")
        return await self.probes.start(network, again=again)

    async def remove_probes(self, network: str | None = None) -> list[str]:
        """Remove the probe containers (of ``network``, or all); returns them as name@node."""
        self.guard.require("removing probe containers")
        return await self.probes.remove(network)

    async def ping_matrix(self) -> list[PingResult]:
        """Ping between every ordered pair of probes, by name and by address ([] when none runs)."""
        return await self.probes.ping_matrix()
