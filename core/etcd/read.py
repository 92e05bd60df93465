"""Read an etcd cluster: members, per-member status and health, v3 keys (python-etcd3), v2 keys (HTTP).

python-etcd3 is blocking: every call runs in ``asyncio.to_thread`` with a timeout, so a stopped
member shows up as unhealthy with an error, never as a hang. Each endpoint is reached through an
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
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import etcd3
import grpc
from etcd3 import etcdrpc

from core.errors import EtcdError, OverlayError
from core.model import EtcdCluster, EtcdMember, KeyEntry
from core.pki.cluster import OperatorCerts, ssl_context

Credentials = Callable[[], OperatorCerts | None]


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
    except Exception as e:  # noqa: BLE001 - any failure means unreachable
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
    except Exception as e:  # noqa: BLE001
        probe.error = f"member list failed: {rpc_error_text(e)}"
    t1 = time.monotonic()
    try:
        client.kvstub.Range(etcdrpc.RangeRequest(key=b"health"), timeout)
        probe.healthy = True
    except Exception as e:  # noqa: BLE001 - e.g. no quorum: the get times out
        probe.healthy, probe.error = False, (
            "knows no leader: a leader election is in progress (or too few members are up for a quorum)"
            if probe.extra.get("election") else f"unhealthy: {rpc_error_text(e) or 'no answer'}")
    probe.latency_ms = round((time.monotonic() - t1) * 1000, 1)
    probe.extra["status_ms"] = round((t1 - t0) * 1000, 1)
    return probe


class EtcdReader:
    """Clients and forwards per endpoint, cached; closed by :meth:`close`."""

    def __init__(self, pool, *, via_ssh: bool = True, timeout: float = 2.0,
                 credentials: Credentials | None = None) -> None:
        self.pool, self.via_ssh, self.timeout = pool, via_ssh, timeout
        self.credentials = credentials or (lambda: None)   # the operator's CA and client pair, if made
        self._forwards: dict[Endpoint, tuple[object, int]] = {}   # endpoint -> (ssh conn, local port)
        self._clients: dict[Endpoint, tuple[int, etcd3.Etcd3Client]] = {}
        self._retired: list[etcd3.Etcd3Client] = []

    async def local_address(self, ep: Endpoint) -> tuple[str, int]:
        """Where this machine connects to reach ``ep`` (a forwarded 127.0.0.1 port, or the endpoint)."""
        if not self.via_ssh:
            return ep.host, ep.port
        conn = await self.pool.connection(ep.via)
        cached = self._forwards.get(ep)
        if cached is None or cached[0] is not conn:
            port = await self.pool.forward_tcp(ep.via, ep.host, ep.port)
            self._forwards[ep] = (conn, port)
        return "127.0.0.1", self._forwards[ep][1]

    async def client(self, ep: Endpoint) -> etcd3.Etcd3Client:
        host, port = await self.local_address(ep)
        cached = self._clients.get(ep)
        if cached is not None and cached[0] == port:
            return cached[1]
        if cached is not None:
            self._retired.append(cached[1])
        client = etcd3.client(host, port, timeout=self.timeout, **self._tls_args(ep), grpc_options=[
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)])
        self._clients[ep] = (port, client)
        return client

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

        It is closed only with the reader: a concurrent call (a refresh beside the watch's poll)
        may still be using it, and closing under it fails that call with "closed channel".
        """
        cached = self._clients.pop(ep, None)
        if cached is not None:
            self._retired.append(cached[1])

    async def probe(self, ep: Endpoint) -> Probe:
        probe = Probe(ep)
        try:
            client = await self.client(ep)
        except OverlayError as e:
            probe.error, probe.ssh_error = str(e), True
            return probe
        probe = await asyncio.to_thread(_probe_blocking, client, probe, self.timeout)
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

    async def first_client(self, endpoints: list[Endpoint]) -> tuple[Endpoint, etcd3.Etcd3Client]:
        """A client of the first endpoint that answers a status call."""
        errors = []
        for ep in endpoints:
            try:
                client = await self.client(ep)
                await asyncio.to_thread(client.maintenancestub.Status, etcdrpc.StatusRequest(), self.timeout)
                return ep, client
            except OverlayError as e:
                errors.append(str(e))
            except Exception as e:  # noqa: BLE001
                self.drop(ep)
                errors.append(f"{ep.via} ({ep.url}): {rpc_error_text(e)}")
        raise EtcdError("no etcd member answered: " + "; ".join(errors or ["no endpoints"]))

    async def keys_v3(self, endpoints: list[Endpoint], prefix: str = "") -> list[KeyEntry]:
        _, client = await self.first_client(endpoints)

        def read() -> list[KeyEntry]:
            pairs = client.get_prefix(prefix) if prefix else client.get_all()
            return [KeyEntry(key=meta.key.decode(errors="replace"), value=pretty_value(value), source="v3")
                    for value, meta in pairs]

        try:
            entries = await asyncio.to_thread(read)
        except Exception as e:  # noqa: BLE001
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
                return await asyncio.to_thread(_get_v2_tree, url, self.timeout, context)
            except _Unreachable as e:
                errors.append(f"{ep.via} ({ep.url}): {e}")
        raise EtcdError("no etcd member answered the v2 API: " + "; ".join(errors or ["no endpoints"]))

    async def close(self) -> None:
        for client in [c for _, c in self._clients.values()] + self._retired:
            client.close()
        self._clients.clear()
        self._retired.clear()
        self._forwards.clear()


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
