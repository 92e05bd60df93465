"""The Docker part of :class:`core.live_service.LiveService`.

Thin async methods over :mod:`core.docker_store` (cluster store per node),
:mod:`core.overlay_networks` (list, create, delete, convergence) and :mod:`core.probes` (probe
containers, ping matrix). One :class:`core.docker_nodes.DockerNodes` (an SDK client per node over
SSH) is shared by all of them and closed with the service.
"""
from __future__ import annotations

from core import docker_store
from core.docker_nodes import DockerNodes
from core.docker_store import DockerStoreChange
from core.model import ConvergeResult, NetworkInfo, PingResult
from core.overlay_networks import OverlayNetworks
from core.probes import Probes


class DockerMixin:
    """Docker methods of the live service: store, networks, probes."""

    @property
    def docker_nodes(self) -> DockerNodes:
        """The per-node SDK clients, opened on first use."""
        dn = self.__dict__.get("_docker_nodes")
        if dn is None:
            dn = self.__dict__["_docker_nodes"] = DockerNodes(self.pool)
            self._closers.append(dn.close)
        return dn

    @property
    def overlay_networks(self) -> OverlayNetworks:
        on = self.__dict__.get("_overlay_networks")
        if on is None:
            on = self.__dict__["_overlay_networks"] = OverlayNetworks(self.docker_nodes, self.pool, self.inventory)
        return on

    @property
    def probes(self) -> Probes:
        pr = self.__dict__.get("_probes")
        if pr is None:
            pr = self.__dict__["_probes"] = Probes(self.docker_nodes, self.inventory)
        return pr

    # --- the cluster store -------------------------------------------------------------
    async def docker_store_plan(self) -> list[DockerStoreChange]:
        """Per node: what pointing its Docker at the etcd cluster takes ("none" when already done)."""
        return await docker_store.plan(self.docker_nodes, self.pool, self.inventory)

    async def docker_store_apply(self) -> list[DockerStoreChange]:
        """Write cluster-store/cluster-advertise into each node's daemon.json and restart Docker where needed."""
        self.require_writable("reconfiguring Docker's cluster store")
        try:
            return await docker_store.apply(self.docker_nodes, self.pool, self.inventory)
        finally:
            self.overlay_networks.forget_stores()     # restarted daemons may use another store now

    # --- networks ---------------------------------------------------------------------
    async def networks(self) -> list[NetworkInfo]:
        """Every network of every node, merged by ID (``nodes`` = where visible)."""
        return await self.overlay_networks.list()

    async def create_network(self, name: str, subnet: str | None = None, attachable: bool = True,
                             node: str | None = None) -> ConvergeResult:
        """Create an overlay network on ``node`` (default: the first) and wait until every node sees it."""
        self.require_writable("creating a network")
        return await self.overlay_networks.create(name, subnet=subnet, attachable=attachable, node=node)

    async def delete_network(self, name: str) -> None:
        """Delete an overlay network (refused while containers are attached) and wait until it is gone."""
        self.require_writable("deleting a network")
        await self.overlay_networks.delete(name)

    # --- probes -------------------------------------------------------------------------
    async def start_probes(self, network: str) -> dict[str, str]:
        """One probe container per node on ``network`` (idempotent): node -> "started"/"kept"."""
        self.require_writable("starting probe containers")
        return await self.probes.start(network)

    async def remove_probes(self, network: str | None = None) -> list[str]:
        """Remove the probe containers (of ``network``, or all); returns them as name@node."""
        self.require_writable("removing probe containers")
        return await self.probes.remove(network)

    async def ping_matrix(self) -> list[PingResult]:
        """Ping between every ordered pair of probes, by name and by address ([] when none runs)."""
        return await self.probes.ping_matrix()
