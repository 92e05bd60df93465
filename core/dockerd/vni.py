"""Where an overlay network's VXLAN ID (VNI) lives, and how to read it.

- Classic mode (etcd cluster store): ``docker network inspect`` shows no VNI. Docker keeps it in
  etcd's v2 key tree at ``/docker/network/v1.0/overlay/network/<network id>``, e.g.
  ``{"subnets":[{"SubnetIP":"10.0.0.0/24","GwIP":"10.0.0.1/24","Vni":256}]}``. We read the whole
  directory with one plain HTTP GET on the node's etcd client URL (the ClusterStore that node's
  dockerd uses), through an SSH TCP forward so the etcd port need not be reachable from here.
- Swarm mode: inspect's ``Options["com.docker.network.driver.overlay.vxlanid_list"]``.

Classic mode allocates the VNI (from 256 up) only when a first container joins the network; until
then etcd holds ``"Vni":0`` and we report None ("not allocated yet").

With etcd over TLS the GET is https with the operator's client certificate (``tls`` gives the
context; the server certificate names 127.0.0.1, where the forward lands). A member that answers in
plaintext (a cluster of an earlier apply, not migrated yet) is read over http.
"""
from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Executor
from urllib.parse import urlparse

from core.errors import DockerError, OverlayError
from core.pki.cluster import wrong_protocol

TlsContext = Callable[[], "ssl.SSLContext | None"]     # None: plaintext; raises when TLS has no certificates

OVERLAY_DIR = "/v2/keys/docker/network/v1.0/overlay/network"
SWARM_VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"


def swarm_vni(attrs: dict) -> int | None:
    """The first VNI of a swarm-scoped overlay network's options, or None."""
    raw = (attrs.get("Options") or {}).get(SWARM_VNI_OPTION, "")
    first = raw.split(",")[0].strip()
    return int(first) if first.isdigit() else None


def parse_overlay_dir(body: bytes) -> dict[str, int]:
    """Network id -> VNI from a v2 GET of the overlay network directory."""
    data = json.loads(body)
    out: dict[str, int] = {}
    for node in (data.get("node") or {}).get("nodes") or []:
        net_id = node.get("key", "").rsplit("/", 1)[-1]
        try:
            subnets = json.loads(node.get("value") or "{}").get("subnets") or []
        except json.JSONDecodeError:
            continue
        # Vni stays 0 until the first container joins the network somewhere: report nothing then
        vnis = [s.get("Vni") for s in subnets if isinstance(s.get("Vni"), int) and s.get("Vni") > 0]
        if net_id and vnis:
            out[net_id] = vnis[0]
    return out


def store_endpoint(cluster_store: str) -> tuple[str, int] | None:
    """(host, port) of the first etcd endpoint of a ClusterStore like ``etcd://10.0.0.1:2379``."""
    if not cluster_store.startswith("etcd://"):
        return None
    first = cluster_store[len("etcd://"):].split(",")[0].split("/")[0]
    parsed = urlparse("//" + first)
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or 2379


class ClassicVniReader:
    """Reads VNIs from etcd's v2 store through one SSH TCP forward per node (opened once)."""

    def __init__(self, pool, tls: TlsContext | None = None, executor: Executor | None = None) -> None:
        self.pool, self.tls = pool, tls
        self.executor = executor        #: threads for the blocking HTTP read (None: asyncio's default)
        self._ports: dict[tuple[str, str, int], int] = {}

    async def _local_port(self, node: str, host: str, port: int) -> int:
        key = (node, host, port)
        if key not in self._ports:
            self._ports[key] = await self.pool.forward_tcp(node, host, port)
        return self._ports[key]

    async def vnis(self, node: str, cluster_store: str, timeout: float = 5.0) -> dict[str, int]:
        """Network id -> VNI as the node's cluster store holds it; {} when it holds none yet."""
        ep = store_endpoint(cluster_store)
        if ep is None:
            return {}
        where = f"{node}: cannot read Docker's overlay state from etcd at {ep[0]}:{ep[1]} (v2 API)"
        local = await self._local_port(node, *ep)
        try:
            context = self.tls() if self.tls else None
        except OverlayError as e:
            raise DockerError(f"{where}: {e}") from None
        path = f"127.0.0.1:{local}{OVERLAY_DIR}?recursive=true"

        def fetch(url: str, ctx: ssl.SSLContext | None) -> bytes | None:
            try:
                with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
                    return resp.read()
            except urllib.error.HTTPError as e:
                if e.code == 404:          # no overlay network was ever created
                    return None
                raise

        def get() -> bytes | None:
            if context is None:
                return fetch(f"http://{path}", None)
            try:
                return fetch(f"https://{path}", context)
            except (OSError, urllib.error.URLError) as e:
                if not wrong_protocol(e):
                    raise
                return fetch(f"http://{path}", None)      # a plaintext member (not migrated to TLS yet)
        try:
            body = await asyncio.get_running_loop().run_in_executor(self.executor, get)
        except (OSError, urllib.error.URLError) as e:
            stale = self._ports.pop((node, *ep), None)
            if stale is not None:
                self.pool.close_forward(stale)      # the next read forwards afresh
            raise DockerError(f"{where}: {e}") from None
        try:
            return parse_overlay_dir(body) if body else {}
        except ValueError as e:
            raise DockerError(f"{where}: the answer is not etcd's JSON ({e})") from None
