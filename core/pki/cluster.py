"""One cluster's PKI under the state dir: ``<state>/pki/<token>-<hash of the inventory path>/``.

Layout (dirs 0700, keys 0600)::

    ca.crt ca.key                        the cluster CA (its key never leaves this machine)
    operator.crt operator.key            this machine's client certificate (python-etcd3, v2 reads)
    nodes/<node>/server.crt|key          etcd's client-facing certificate: SANs node IP + 127.0.0.1
    nodes/<node>/peer.crt|key            etcd's peer certificate: SAN node IP
    nodes/<node>/client.crt|key          the node's client certificate (dockerd, etcdctl on the node)

:meth:`ClusterPKI.ensure` reuses every file that is still good and issues again only what is
missing, expires within 30 days, names another address than the node's, or was signed by a CA
that had to be made again.
"""
from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.model import Inventory
from core.paths import state_dir
from core.pki import certs
from core.pki.certs import CLIENT_AUTH, SERVER_AUTH, Pair
from core.pki.files import PKIFileError, ensure_private_dir, read_nofollow, write_private

LOOPBACK = "127.0.0.1"


def cluster_id(inventory: Inventory) -> str:
    """The PKI dir name of an inventory: its etcd token and a hash of its resolved path."""
    digest = hashlib.sha256(str(Path(inventory.path).expanduser().resolve()).encode()).hexdigest()[:12]
    return f"{inventory.cluster.etcd_token}-{digest}"


def pki_dir(inventory: Inventory) -> Path:
    return state_dir() / "pki" / cluster_id(inventory)


@dataclass(frozen=True)
class NodeCerts:
    """What one node gets: the CA certificate and its own server, peer and client pairs."""

    node: str
    ca: bytes
    server: Pair
    peer: Pair
    client: Pair

    def files(self) -> dict[str, tuple[bytes, int]]:
        """File name on the node -> (content, mode)."""
        out: dict[str, tuple[bytes, int]] = {"ca.crt": (self.ca, 0o644)}
        for name, pair in (("server", self.server), ("peer", self.peer), ("client", self.client)):
            out[f"{name}.crt"] = (pair.cert, 0o644)
            out[f"{name}.key"] = (pair.key, 0o600)
        return out


@dataclass(frozen=True)
class OperatorCerts:
    """Paths on this machine of the CA certificate and the operator's client pair."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class Ensured:
    """The outcome of :meth:`ClusterPKI.ensure`: every node's certificates and what was (re)issued."""

    nodes: dict[str, NodeCerts]
    operator: OperatorCerts
    issued: list[str] = field(default_factory=list)     # "docker-node1 server: names 198.18.0.9, not ..."


class ClusterPKI:
    """The CA and certificates of one cluster, kept in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_inventory(cls, inventory: Inventory) -> ClusterPKI:
        return cls(pki_dir(inventory))

    def _read_pair(self, rel: str) -> Pair | None:
        cert, key = read_nofollow(self.root / f"{rel}.crt"), read_nofollow(self.root / f"{rel}.key")
        return Pair(cert, key) if cert is not None and key is not None else None

    def _write_pair(self, rel: str, pair: Pair) -> None:
        write_private(self.root / f"{rel}.key", pair.key, 0o600)
        write_private(self.root / f"{rel}.crt", pair.cert, 0o600)

    def operator(self) -> OperatorCerts | None:
        """The operator's certificates if they exist already (reading never creates a PKI)."""
        paths = OperatorCerts(self.root / "ca.crt", self.root / "operator.crt", self.root / "operator.key")
        if all(p.is_file() and not p.is_symlink() for p in (paths.ca, paths.cert, paths.key)):
            return paths
        return None

    def _leaf(self, ca: Pair, rel: str, cn: str, ips: list[str], use: list, issued: list[str],
              dns: list[str] | None = None) -> Pair:
        have = self._read_pair(rel)
        why = certs.why_renew(have, ca.cert, ips)
        if why is None and have is not None:
            return have
        pair = certs.issue(ca, cn, ips, use, dns)
        self._write_pair(rel, pair)
        issued.append(f"{rel.replace('nodes/', '').replace('/', ' ')}: {why}")
        return pair

    def due(self, ips: dict[str, str]) -> list[str]:
        """What :meth:`ensure` would issue now (nothing is written): "docker-node1 server: expires 2027-01-02"."""
        ca = self._read_pair("ca")
        why = certs.ca_why_renew(ca)
        if why is not None or ca is None:
            return [f"CA: {why}"]
        out = []
        wanted: list[tuple[str, list[str]]] = [("operator", [])]
        for node, ip in ips.items():
            wanted += [(f"nodes/{node}/server", _unique([ip, LOOPBACK])), (f"nodes/{node}/peer", [ip]),
                       (f"nodes/{node}/client", [])]
        for rel, want in wanted:
            reason = certs.why_renew(self._read_pair(rel), ca.cert, want)
            if reason:
                out.append(f"{rel.replace('nodes/', '').replace('/', ' ')}: {reason}")
        return out

    def ensure(self, ips: dict[str, str]) -> Ensured:
        """The CA, the operator's pair and every node's pairs (node name -> underlay IP), made as needed."""
        ensure_private_dir(self.root)
        ensure_private_dir(self.root / "nodes")
        issued: list[str] = []
        ca = self._read_pair("ca")
        why = certs.ca_why_renew(ca)
        if why is not None or ca is None:
            ca = certs.make_ca(f"overlay-tui etcd CA {self.root.name}")
            self._write_pair("ca", ca)
            issued.append(f"CA: {why}")
        self._leaf(ca, "operator", "overlay-tui operator", [], [CLIENT_AUTH], issued)
        nodes = {}
        for node, ip in ips.items():
            ensure_private_dir(self.root / "nodes" / node)
            both = [SERVER_AUTH, CLIENT_AUTH]
            server = self._leaf(ca, f"nodes/{node}/server", node, _unique([ip, LOOPBACK]), both, issued, ["localhost"])
            peer = self._leaf(ca, f"nodes/{node}/peer", node, [ip], both, issued)
            client = self._leaf(ca, f"nodes/{node}/client", f"{node} client", [], [CLIENT_AUTH], issued)
            nodes[node] = NodeCerts(node, ca.cert, server, peer, client)
        operator = self.operator()
        assert operator is not None
        return Ensured(nodes, operator, issued)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def ssl_context(op: OperatorCerts) -> ssl.SSLContext:
    """A client TLS context that trusts only the cluster CA and presents the operator's certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(op.ca))
    ctx.load_cert_chain(str(op.cert), str(op.key))
    return ctx


def wrong_protocol(exc: BaseException) -> bool:
    """True when a TLS handshake met a plaintext server (etcd started without TLS)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError) or not isinstance(reason, ssl.SSLError):
        return False            # a certificate that does not verify is never a reason to fall back
    text = str(reason).upper()
    return "WRONG_VERSION_NUMBER" in text or "UNEXPECTED_EOF" in text or isinstance(reason, ssl.SSLEOFError)


def context_for(inventory: Inventory) -> Callable[[], ssl.SSLContext | None]:
    """What a v2 reader of ``inventory``'s etcd uses: None for plaintext, else a context with the
    operator's certificate (an :class:`core.pki.files.PKIFileError` when there is none yet)."""
    pki = ClusterPKI.for_inventory(inventory)

    def context() -> ssl.SSLContext | None:
        if not inventory.cluster.etcd_tls:
            return None
        op = pki.operator()
        if op is None:
            raise PKIFileError(f"etcd wants a client certificate and {pki.root} holds none yet: "
                               "`overlay-tui runbook apply` makes the cluster's CA and certificates")
        return ssl_context(op)
    return context
