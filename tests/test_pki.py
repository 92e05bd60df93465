"""Offline tests of the cluster PKI, the etcd TLS pieces and the plaintext/TLS decisions (no lab needed)."""
from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from core.dockerd.store import TLS_OPTS, store_opts
from core.errors import EtcdError, InventoryError
from core.etcd.decide import Inspection, decide
from core.etcd.migrate import joining_argv
from core.etcd.plan import plan_cluster, transport_only
from core.etcd.tls import ENV_FILE, NODE_PKI_DIR, etcdctl_env, node_files, push_input
from core.inventory import parse_inventory
from core.model import ClusterSpec, Inventory, NodeSpec
from core.pki import certs
from core.pki.certs import CLIENT_AUTH, SERVER_AUTH
from core.pki.cluster import ClusterPKI, cluster_id, ssl_context, wrong_protocol
from core.pki.files import PKIFileError, ensure_private_dir, read_nofollow, write_private

IPS = {"docker-node1": "198.18.0.1", "docker-node2": "198.18.0.2"}


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


@pytest.fixture
def pki(tmp_path) -> ClusterPKI:
    return ClusterPKI(tmp_path / "pki" / "c1")


def test_node_certificates_have_the_sans_and_usages_etcd_needs(pki):
    made = pki.ensure(IPS)
    n1 = made.nodes["docker-node1"]
    assert certs.ip_sans(n1.server.cert) == {"198.18.0.1", "127.0.0.1"}
    assert certs.ip_sans(n1.peer.cert) == {"198.18.0.1"}
    assert certs.usages(n1.server.cert) == certs.usages(n1.peer.cert) == {SERVER_AUTH, CLIENT_AUTH}
    assert certs.usages(n1.client.cert) == {CLIENT_AUTH}
    ca = load(n1.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for pem in (n1.server.cert, n1.peer.cert, n1.client.cert):
        cert = load(pem)
        assert cert.issuer == ca.subject
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
        assert certs.why_renew(certs.Pair(pem, b""), n1.ca, []) is not None     # a pair needs its key
    assert certs.why_renew(n1.server, n1.ca, ["198.18.0.1", "127.0.0.1"]) is None


def test_files_are_private_and_the_ca_key_is_never_among_a_nodes_files(pki):
    made = pki.ensure(IPS)
    assert mode(pki.root) == mode(pki.root / "nodes") == mode(pki.root / "nodes" / "docker-node1") == 0o700
    for p in pki.root.rglob("*"):
        if p.is_file():
            assert mode(p) == 0o600, p
    files = node_files(made.nodes["docker-node2"], "https://198.18.0.2:2379")
    ca_key = (pki.root / "ca.key").read_bytes()
    assert all(data != ca_key for data, _ in files.values())
    assert sorted(files) == sorted([f"{NODE_PKI_DIR}/{n}" for n in ("ca.crt", "server.crt", "server.key", "peer.crt",
                                                                     "peer.key", "client.crt", "client.key")] + [ENV_FILE])
    assert {files[f"{NODE_PKI_DIR}/{n}.key"][1] for n in ("server", "peer", "client")} == {0o600}
    assert made.operator.cert == pki.root / "operator.crt" and pki.operator() == made.operator


def test_a_second_ensure_reuses_everything_and_an_ip_change_renews_only_that_node(pki):
    first = pki.ensure(IPS)
    again = pki.ensure(IPS)
    assert again.issued == [] and again.nodes == first.nodes
    moved = pki.ensure({**IPS, "docker-node2": "198.18.0.9"})
    assert sorted(moved.issued) == ["docker-node2 peer: names 198.18.0.2, not 198.18.0.9",
                                    "docker-node2 server: names 127.0.0.1, 198.18.0.2, not 127.0.0.1, 198.18.0.9"]
    assert moved.nodes["docker-node1"] == first.nodes["docker-node1"]
    assert moved.nodes["docker-node2"].client == first.nodes["docker-node2"].client


def test_an_expiring_leaf_or_a_new_ca_renews(pki, monkeypatch):
    assert pki.due(IPS) == ["CA: missing"]
    first = pki.ensure(IPS)
    assert pki.due(IPS) == []
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=certs.LEAF_DAYS - 10)
    monkeypatch.setattr(certs, "_now", lambda: soon)
    due = pki.due(IPS)
    assert len(due) == 7 and due[1].startswith("docker-node1 server: expires ")
    expiring = pki.ensure(IPS)
    assert len(expiring.issued) == 7 and all("expires" in why for why in expiring.issued)   # 3 per node + operator
    monkeypatch.undo()
    (pki.root / "ca.key").unlink()
    fresh = pki.ensure(IPS)
    assert fresh.issued[0] == "CA: missing" and len(fresh.issued) == 8
    assert fresh.nodes["docker-node1"].ca != first.nodes["docker-node1"].ca
    assert certs.why_renew(first.nodes["docker-node1"].server, fresh.nodes["docker-node1"].ca,
                           ["198.18.0.1", "127.0.0.1"]) == "issued by another CA"


def test_no_symlink_is_followed(tmp_path, pki):
    target = tmp_path / "victim"
    target.write_bytes(b"keep me")
    ensure_private_dir(pki.root)
    (pki.root / "ca.key").symlink_to(target)
    with pytest.raises(PKIFileError, match="symlink"):
        read_nofollow(pki.root / "ca.key")
    write_private(pki.root / "ca.key", b"new")          # replaces the link itself
    assert target.read_bytes() == b"keep me" and not (pki.root / "ca.key").is_symlink()
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(PKIFileError, match="symlink"):
        ensure_private_dir(linked)
    with pytest.raises(PKIFileError, match="symlink"):
        ClusterPKI(linked).ensure(IPS)
    assert not (tmp_path / "elsewhere").exists()


def test_an_open_dir_is_tightened_and_temp_files_never_linger(tmp_path):
    d = tmp_path / "open"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    write_private(d / "k", b"x")
    assert mode(d) == 0o700 and mode(d / "k") == 0o600 and sorted(p.name for p in d.iterdir()) == ["k"]


def test_the_operator_context_trusts_only_the_cluster_ca(pki):
    made = pki.ensure(IPS)
    ctx = ssl_context(made.operator)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1
    assert wrong_protocol(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    assert not wrong_protocol(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert not wrong_protocol(ConnectionRefusedError())


def test_cluster_id_is_per_inventory(tmp_path):
    a = Inventory(path=str(tmp_path / "a.toml"), nodes=())
    b = Inventory(path=str(tmp_path / "b.toml"), nodes=())
    assert cluster_id(a) != cluster_id(b) and cluster_id(a).startswith("etcd-cluster-01-")


def test_etcdctl_env_and_the_push_input():
    env = etcdctl_env("https://198.18.0.1:2379")
    assert "export ETCDCTL_ENDPOINTS=https://198.18.0.1:2379" in env and "export ETCDCTL_API=3" in env
    assert f"export ETCDCTL_CACERT={NODE_PKI_DIR}/ca.crt" in env and f"export ETCDCTL_KEY={NODE_PKI_DIR}/client.key" in env
    line = push_input({f"{NODE_PKI_DIR}/server.key": (b"secret", 0o600)}).split()
    assert line[0] == "600" and line[2] == f"{NODE_PKI_DIR}/server.key" and "secret" not in line
    with pytest.raises(EtcdError, match="refusing"):
        push_input({"/root/.ssh/authorized_keys": (b"x", 0o600)})


def test_docker_store_opts_follow_etcd_tls_and_keep_other_keys():
    assert store_opts(None, True) == TLS_OPTS
    assert store_opts({"kv.path": "/x", **TLS_OPTS}, False) == {"kv.path": "/x"}
    assert store_opts(TLS_OPTS, False) is None


def test_inventory_etcd_tls_is_a_boolean():
    base = {"node": [{"name": "n1", "address": "198.18.0.1"}]}
    assert parse_inventory(base, "inv.toml").cluster.etcd_tls is True
    assert parse_inventory({**base, "cluster": {"etcd_tls": False}}, "inv.toml").cluster.etcd_tls is False
    with pytest.raises(InventoryError, match="etcd_tls.*true or false"):
        parse_inventory({**base, "cluster": {"etcd_tls": "no"}}, "inv.toml")


def _inventory(tls: bool) -> Inventory:
    return Inventory(path="inv.toml", nodes=tuple(NodeSpec(n, ip) for n, ip in IPS.items()),
                     cluster=ClusterSpec(etcd_tls=tls))


def test_a_plaintext_member_of_this_cluster_is_refused_with_the_migration_then_migrated_with_force():
    tls_plan = plan_cluster(_inventory(True), IPS)[0]
    plain_plan = plan_cluster(_inventory(False), IPS)[0]
    assert transport_only(plain_plan.argv, tls_plan) and transport_only(tls_plan.argv, plain_plan)
    assert not transport_only(tls_plan.argv, tls_plan)
    running = Inspection(processes=[(42, list(plain_plan.argv))], version="3.4.23", data_dir_exists=True,
                         has_member=True)
    refused = decide(tls_plan, running)
    assert refused.kind == "refuse" and "runs in plaintext" in refused.reason and "apply --force" in refused.reason
    migrate = decide(tls_plan, running, force=True)
    assert (migrate.kind, migrate.stop_pids, migrate.wipe) == ("migrate", [42], False)
    stopped = Inspection(version="3.4.23", data_dir_exists=True, has_member=True,
                         marker=json.dumps(plain_plan.marker()))
    assert decide(tls_plan, stopped).kind == "refuse"
    assert decide(tls_plan, stopped, force=True).kind == "migrate"
    other = list(plain_plan.argv)
    other[other.index("--initial-cluster-token") + 1] = "another"
    assert decide(tls_plan, Inspection(processes=[(7, other)], version="3.4.23"), force=True).kind == "start"


def test_a_member_rejoining_during_a_migration_names_only_the_members_so_far():
    plans = plan_cluster(_inventory(True), IPS)
    argv = joining_argv(plans[1], plans)
    assert argv[argv.index("--initial-cluster-state") + 1] == "existing"
    assert argv[argv.index("--initial-cluster") + 1] == plans[1].initial_cluster
    alone = joining_argv(plans[0], plans[:1])
    assert alone[alone.index("--initial-cluster") + 1] == "docker-node1=https://198.18.0.1:2380"
    assert len(argv) == len(plans[1].argv)
