"""Read an etcd cluster: members, per-member status and health, v3 keys (python-etcd3), v2 keys (HTTP).

python-etcd3 is blocking: every call runs in a thread of the reader's own bounded pool with a
timeout, so a stopped member shows up as unhealthy with an error, never as a hang (and a call that
outlives its caller ties up an etcd thread, not a thread the rest of core needs). Each endpoint is reached through an
SSH local port forward from the node that owns it (:meth:`core.ssh.SSHPool.forward_tcp`), so the same
code works where the operator cannot route to the nodes' client URLs; ``via_ssh=False`` connects
directly (the lab's operator seat can). ``status()`` answers only for the member connected to, so
there is one client per endpoint.

An endpoint with ``tls`` is reached over TLS with the operator's client certificate (see
:mod:`core.pki.cluster`); the server certificate names 127.0.0.1, so it verifies through the forward.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import etcd3
import etcd3.exceptions
import grpc
from etcd3 import etcdrpc

from core.askings import NodeAskings
from core.errors import EtcdError, NodeUnreachable, OverlayError
from core.model import EtcdCluster, EtcdMember, KeyEntry
from core.pki.cluster import OperatorCerts, ssl_context

Credentials = Callable[[], OperatorCerts | None]
#: what a gRPC call to a member raises when it is down, slow or refuses; anything else is a bug
RPC_ERRORS = (grpc.RpcError, etcd3.exceptions.Etcd3Exception)
#: threads for blocking etcd calls (a probe per endpoint at once, plus a key read and the watch's cancel)
THREADS = 8
#: seconds a read waits for the SSH connection of a silent node (its last connect failed after at least this
#: long); the connect goes on (within the node's connect_timeout) for the next read, so a silent node costs each
#: refresh this, not its timeout. A node that refused at once is waited for in full.
CONNECT_PATIENCE = 1.0
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    """A client URL ``host:port`` and the node whose SSH connection reaches it."""

    via: str          # node name
    host: str
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"


@dataclass
class Probe:
    """What one endpoint answered (filled in a worker thread)."""

    endpoint: Endpoint
    members: list[EtcdMember] | None = None
    member_id: int | None = None
    leader_id: int | None = None
    version: str | None = None
    db_size: int | None = None
    raft_term: int | None = None
    raft_index: int | None = None
    healthy: bool = False
    latency_ms: float | None = None
    error: str | None = None
    ssh_error: bool = False    # the node it was reached through did not answer SSH: its health is unknown
    extra: dict = field(default_factory=dict)


def rpc_error_text(exc: BaseException) -> str:
    """A short operator-readable text for a gRPC or etcd3 error."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            details = exc.details() or ""
            if "etcdserver:" in details and "leader" in details:   # "no leader", "leader changed"
                return f"a leader election is in progress ({details.splitlines()[0]}); it settles in a few seconds"
            return "unavailable: nothing answers there (etcd stopped or not listening)"
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "no answer in time (a member without quorum cannot serve reads)"
        details = (exc.details() or "").splitlines()[0] if exc.details() else ""
        return f"{exc.code().name.lower()}: {details}".rstrip(": ")
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def hex_id(member_id: int) -> str:
    """Member id as etcdctl prints it."""
    return format(member_id, "x")


def pretty_value(raw: bytes | str | None) -> str | None:
    """Decode a value; JSON is pretty-printed."""
    if raw is None:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def _probe_blocking(client: etcd3.Etcd3Client, probe: Probe, timeout: float) -> Probe:
    """Health (a linearizable get of key "health", as `etcdctl endpoint health`), status, members."""
    t0 = time.monotonic()
    try:
        status = client.maintenancestub.Status(etcdrpc.StatusRequest(), timeout)
    except RPC_ERRORS as e:
        probe.error = f"no answer from {probe.endpoint.url} (via {probe.endpoint.via}): {rpc_error_text(e)}"
        return probe
    probe.member_id, probe.leader_id = status.header.member_id, status.leader
    if not status.leader:
        probe.extra["election"] = True      # it answers but knows no leader: an election (or no quorum)
    probe.version, probe.db_size = status.version, status.dbSize
    probe.raft_term, probe.raft_index = status.raftTerm, status.raftIndex
    try:
        resp = client.clusterstub.MemberList(etcdrpc.MemberListRequest(), timeout)
        probe.members = [EtcdMember(id=hex_id(m.ID), name=m.name, peer_urls=list(m.peerURLs),
                                    client_urls=list(m.clientURLs)) for m in resp.members]
    except RPC_ERRORS as e:
        probe.error = f"member list failed: {rpc_error_text(e)}"
    t1 = time.monotonic()
    try:
        client.kvstub.Range(etcdrpc.RangeRequest(key=b"health"), timeout)
        probe.healthy = True
    except RPC_ERRORS as e:             # e.g. no quorum: the get times out
        probe.healthy, probe.error = False, (
            "knows no leader: a leader election is in progress (or too few members are up for a quorum)"
            if probe.extra.get("election") else f"unhealthy: {rpc_error_text(e) or 'no answer'}")
    probe.latency_ms = round((time.monotonic() - t1) * 1000, 1)
    probe.extra["status_ms"] = round((t1 - t0) * 1000, 1)
    return probe


class _Held:
    """A cached client and how many calls use it now: a dropped one is closed when its last call ends."""

    def __init__(self, port: int, client: etcd3.Etcd3Client) -> None:
        self.port, self.client, self.users, self.dropped = port, client, 0, False


class EtcdReader:
    """Clients and forwards per endpoint, cached; its own threads; all closed by :meth:`close`."""

    def __init__(self, pool, *, via_ssh: bool = True, timeout: float = 2.0,
                 credentials: Credentials | None = None, threads: int = THREADS) -> None:
        self.pool, self.via_ssh, self.timeout = pool, via_ssh, timeout
        self.credentials = credentials or (lambda: None)   # the operator's CA and client pair, if made
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="overlay-tui-etcd")
        self._forwards: dict[Endpoint, tuple[object, int]] = {}   # endpoint -> (ssh conn, local port)
        self._clients: dict[Endpoint, _Held] = {}
        self.connects: NodeAskings[object] = NodeAskings(share=True)   # per node, its SSH connect, maybe still going

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call in one of the reader's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    @property
    def open_clients(self) -> int:
        """Clients cached now (the soak bench watches it stay flat)."""
        return len(self._clients)

    async def local_address(self, ep: Endpoint) -> tuple[str, int]:
        """Where this machine connects to reach ``ep`` (a forwarded 127.0.0.1 port, or the endpoint)."""
        if not self.via_ssh:
            return ep.host, ep.port
        conn = await self._connection(ep.via)
        cached = self._forwards.get(ep)
        if cached is None or cached[0] is not conn:
            if cached is not None:
                self.pool.close_forward(cached[1])        # it rode on a connection that is gone
            port = await self.pool.forward_tcp(ep.via, ep.host, ep.port)
            self._forwards[ep] = (conn, port)
        return "127.0.0.1", self._forwards[ep][1]

    async def _connection(self, node: str) -> object:
        """The node's SSH connection. A silent node is waited for CONNECT_PATIENCE only: then the read goes on
        without it (another node's forward, or an error) and the connect, for the next read."""
        connecting = self.connects.ask(node, lambda: self.pool.connection(node), CONNECT_PATIENCE)
        if node in self.connects.silent:
            await asyncio.wait({connecting}, timeout=CONNECT_PATIENCE)
            if not connecting.done():
                raise NodeUnreachable(node, f"no SSH connection within {CONNECT_PATIENCE:g} s (its last connect "
                                            "failed too; still trying)")
        return await asyncio.shield(connecting)     # a read given up on leaves the connect going

    async def _held(self, ep: Endpoint) -> _Held:
        host, port = await self.local_address(ep)
        held = self._clients.get(ep)
        if held is not None and held.port == port:
            return held
        if held is not None:
            self.drop(ep)
        held = _Held(port, etcd3.client(host, port, timeout=self.timeout, **self._tls_args(ep), grpc_options=[
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]))
        self._clients[ep] = held
        return held

    @asynccontextmanager
    async def using(self, ep: Endpoint) -> AsyncIterator[etcd3.Etcd3Client]:
        """``ep``'s cached client, held for the block: :meth:`drop` never closes it under a call."""
        held = await self._held(ep)
        held.users += 1
        try:
            yield held.client
        finally:
            held.users -= 1
            if held.dropped and held.users == 0:
                held.client.close()

    def _certs(self, ep: Endpoint) -> OperatorCerts:
        op = self.credentials()
        if op is None:
            raise EtcdError(f"{ep.via}: {ep.url} needs a client certificate and this machine has none for the "
                            "cluster yet: `overlay-tui runbook apply` makes the cluster's CA and certificates")
        return op

    def _tls_args(self, ep: Endpoint) -> dict[str, str]:
        if not ep.tls:
            return {}
        op = self._certs(ep)
        return {"ca_cert": str(op.ca), "cert_key": str(op.key), "cert_cert": str(op.cert)}

    def ssl_for(self, ep: Endpoint) -> ssl.SSLContext | None:
        """The TLS context for an HTTP GET on ``ep`` (None: plaintext); EtcdError without certificates."""
        return ssl_context(self._certs(ep)) if ep.tls else None

    async def dedicated_client(self, ep: Endpoint, timeout: float | None = None) -> etcd3.Etcd3Client:
        """A client of its own (not cached; the caller closes it), e.g. for a long watch."""
        host, port = await self.local_address(ep)
        return etcd3.client(host, port, timeout=timeout, **self._tls_args(ep))

    def drop(self, ep: Endpoint) -> None:
        """Forget ``ep``'s client (after an error), so the next call reconnects at once.

        Its channel is closed now, or when the last call still using it (a refresh beside the
        watch's poll) ends: closing under a call would fail it with "closed channel".
        """
        held = self._clients.pop(ep, None)
        if held is not None:
            held.dropped = True
            if held.users == 0:
                held.client.close()

    async def probe(self, ep: Endpoint) -> Probe:
        probe = Probe(ep)
        try:
            async with self.using(ep) as client:
                probe = await self.thread(_probe_blocking, client, probe, self.timeout)
        except OverlayError as e:
            probe.error, probe.ssh_error = str(e), True
            return probe
        if probe.error:
            self.drop(ep)
        return probe

    async def cluster(self, endpoints: list[Endpoint]) -> EtcdCluster:
        """Members with status and health, every endpoint probed concurrently."""
        from core.etcd.health import assemble_cluster

        probes = list(await asyncio.gather(*(self.probe(ep) for ep in endpoints)))
        probes = await self._around_ssh_failures(probes)
        listed = next((p.members for p in probes if p.members), None)
        if listed:
            known = {(p.endpoint.host, p.endpoint.port) for p in probes}
            via = next(p.endpoint.via for p in probes if p.members)
            extra = []
            for m in listed:
                ep = _member_endpoint(m, via)
                if ep and (ep.host, ep.port) not in known:
                    extra.append(ep)
                    known.add((ep.host, ep.port))
            probes += await asyncio.gather(*(self.probe(ep) for ep in extra))
        return assemble_cluster(probes, endpoints)

    async def _around_ssh_failures(self, probes: list[Probe]) -> list[Probe]:
        """An endpoint whose own node's SSH fails is asked again through a node that answers (the member
        may be fine: only SSH died). Its probe keeps ``ssh_error`` only when no other way worked."""
        if not self.via_ssh:
            return probes
        good = [p.endpoint.via for p in probes if not p.ssh_error]
        if not good:
            return probes

        async def again(p: Probe) -> Probe:
            if not p.ssh_error:
                return p
            q = await self.probe(dataclasses.replace(p.endpoint, via=good[0]))
            if q.ssh_error:
                return p
            q.endpoint = p.endpoint
            return q
        return list(await asyncio.gather(*(again(p) for p in probes)))

    async def first_ready(self, endpoints: list[Endpoint]) -> Endpoint:
        """The first endpoint whose member answers a status call."""
        errors = []
        for ep in endpoints:
            try:
                async with self.using(ep) as client:
                    await self.thread(client.maintenancestub.Status, etcdrpc.StatusRequest(), self.timeout)
                return ep
            except OverlayError as e:
                errors.append(str(e))
            except RPC_ERRORS as e:
                self.drop(ep)
                errors.append(f"{ep.via} ({ep.url}): {rpc_error_text(e)}")
        raise EtcdError("no etcd member answered: " + "; ".join(errors or ["no endpoints"]))

    async def keys_v3(self, endpoints: list[Endpoint], prefix: str = "") -> list[KeyEntry]:
        ep = await self.first_ready(endpoints)

        def read(client: etcd3.Etcd3Client) -> list[KeyEntry]:
            pairs = client.get_prefix(prefix) if prefix else client.get_all()
            return [KeyEntry(key=meta.key.decode(errors="replace"), value=pretty_value(value), source="v3")
                    for value, meta in pairs]

        try:
            async with self.using(ep) as client:
                entries = await self.thread(read, client)
        except RPC_ERRORS as e:
            raise EtcdError(f"reading v3 keys failed: {rpc_error_text(e)}") from None
        return sorted(entries, key=lambda k: k.key)

    async def keys_v2(self, endpoints: list[Endpoint], prefix: str = "/docker") -> list[KeyEntry]:
        """The v2 key tree under ``prefix`` (Docker's classic store), flattened, JSON pretty-printed."""
        errors = []
        for ep in endpoints:
            try:
                host, port = await self.local_address(ep)
                context = self.ssl_for(ep)
            except OverlayError as e:
                errors.append(str(e))
                continue
            path = "/" + prefix.strip("/") if prefix.strip("/") else ""
            scheme = "https" if ep.tls else "http"
            url = f"{scheme}://{host}:{port}/v2/keys{urllib.parse.quote(path)}?recursive=true&sorted=true"
            try:
                return await self.thread(_get_v2_tree, url, self.timeout, context)
            except _Unreachable as e:
                errors.append(f"{ep.via} ({ep.url}): {e}")
        raise EtcdError("no etcd member answered the v2 API: " + "; ".join(errors or ["no endpoints"]))

    async def close(self) -> None:
        """Close every client and forward, then let the threads go (a call stuck in one is not waited for)."""
        clients, self._clients = list(self._clients.values()), {}
        for held in clients:             # on the way out: a call still using one fails, as it should
            held.client.close()
        for _, port in self._forwards.values():
            self.pool.close_forward(port)
        self._forwards.clear()
        await self.connects.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _Unreachable(Exception):
    pass


def _get_v2_tree(url: str, timeout: float, context: ssl.SSLContext | None = None) -> list[KeyEntry]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            err = json.loads(text)
        except ValueError:
            raise EtcdError("the etcd v2 API is off on this cluster (start etcd with --enable-v2=true; "
                            f"got HTTP {e.code}: {text.strip()[:80]})") from None
        if err.get("errorCode") == 100:      # key not found: no tree yet
            return []
        raise EtcdError(f"v2 read failed: {err.get('message')} ({err.get('cause')})") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _Unreachable(str(getattr(e, "reason", e))) from None
    out: list[KeyEntry] = []
    _flatten_v2(body.get("node", {}), out)
    return out


def _flatten_v2(node: dict, out: list[KeyEntry]) -> None:
    key = node.get("key", "/")
    if node.get("dir"):
        if key != "/":
            out.append(KeyEntry(key=key, value=None, is_dir=True, source="v2"))
        for child in node.get("nodes", []):
            _flatten_v2(child, out)
    else:
        out.append(KeyEntry(key=key, value=pretty_value(node.get("value")), source="v2"))


def _member_endpoint(member: EtcdMember, via: str) -> Endpoint | None:
    if not member.client_urls:
        return None
    parsed = urllib.parse.urlsplit(member.client_urls[0])
    if not parsed.hostname or not parsed.port:
        return None
    return Endpoint(via=via, host=parsed.hostname, port=parsed.port, tls=parsed.scheme == "https")
