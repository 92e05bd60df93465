"""etcd over TLS on the real lab, from the operator's seat (the root namespace) and from the nodes.

A fresh 2-node lab after `runbook apply`: plain http and https without a client certificate are
refused at the nodes' client URLs, the operator's certificate is accepted, `etcdctl` on a node works
after sourcing /etc/etcd/etcdctl.env, the overlay still pings across and a network made on node 1 is
global on node 2. Then, on 3 nodes, a plaintext cluster (`etcd_tls = false`, whose plan says the
store is open to the underlay) is reported and migrated to TLS by `runbook apply --force`, keeping
Docker's network.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import lab_name, require_lab, start_lab, stop_lab
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.etcd.tls import ENV_FILE, NODE_PKI_DIR, OPEN_STORE_WARNING, PLAINTEXT_WHILE_TLS_WANTED
from core.live import LiveService
from core.pki.cluster import ClusterPKI, ssl_context

pytestmark = pytest.mark.lab
OVERLAY_TUI = str(Path(sys.executable).parent / "overlay-tui")
ETCDCTL = f". {ENV_FILE} && etcdctl"


def cli(inventory: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([OVERLAY_TUI, "--inventory", inventory, *args], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def get(url: str, context: ssl.SSLContext | None) -> bytes:
    with urllib.request.urlopen(url, timeout=5, context=context) as resp:
        return resp.read()


def served_certificate(address: str, pki: ClusterPKI) -> bytes:
    """The DER certificate etcd presents at ``address``:2379 to the operator."""
    operator = pki.operator()
    assert operator is not None
    with socket.create_connection((address, 2379), timeout=5) as raw, \
            ssl_context(operator).wrap_socket(raw, server_hostname=address) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


REFUSED = (urllib.error.URLError, http.client.HTTPException, ConnectionError, ssl.SSLError, TimeoutError)


@pytest.fixture
def fresh_lab():
    require_lab()
    name = lab_name("t")
    try:
        yield start_lab(name, 2)
    finally:
        stop_lab(name)


@pytest.fixture
def fresh_lab3():
    """3 nodes: a member rejoining during the migration must wait out etcd's strict reconfiguration check."""
    require_lab()
    name = lab_name("u")
    try:
        yield start_lab(name, 3)
    finally:
        stop_lab(name)


def assert_tls_from_the_seat(lab) -> None:
    """Every node's client URL: http refused, https without a client certificate refused, ours accepted."""
    operator = ClusterPKI.for_inventory(lab.inventory).operator()
    assert operator is not None
    for node in lab.nodes:
        with pytest.raises(REFUSED):
            get(f"http://{node.address}:2379/version", None)
        no_cert = ssl.create_default_context(cafile=str(operator.ca))
        with pytest.raises(REFUSED):
            get(f"https://{node.address}:2379/version", no_cert)
        assert json.loads(get(f"https://{node.address}:2379/version", ssl_context(operator)))["etcdserver"].startswith("3.")
        tree = json.loads(get(f"https://{node.address}:2379/v2/keys/docker/nodes", ssl_context(operator)))
        assert {n["key"] for n in tree["node"]["nodes"]} == {f"/docker/nodes/{n.address}:2375" for n in lab.nodes}


async def assert_on_the_nodes(lab) -> None:
    svc = LiveService(lab.inventory)
    try:
        for node in lab.nodes:
            listed = await svc.pool.run(node.name, f"{ETCDCTL} member list", check=True)
            lines = listed.stdout.strip().splitlines()
            assert len(lines) == 2 and all(", started, " in ln and "https://" in ln and "http://" not in ln
                                           for ln in lines), listed.stdout
            files = await svc.pool.run(node.name, f"stat -c '%a %n' {NODE_PKI_DIR} {NODE_PKI_DIR}/*", check=True)
            modes = dict(reversed(ln.split(" ", 1)) for ln in files.stdout.strip().splitlines())
            assert modes[NODE_PKI_DIR] == "700" and f"{NODE_PKI_DIR}/ca.key" not in modes
            assert {modes[f"{NODE_PKI_DIR}/{k}.key"] for k in ("server", "peer", "client")} == {"600"}
            plain = await svc.pool.run(node.name, "ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 "
                                       "--dial-timeout 2s member list")
            assert not plain.ok                                           # no plaintext way in, even locally
        certs = [await svc.pool.run(n.name, f"cat {NODE_PKI_DIR}/server.crt", check=True) for n in lab.nodes]
        assert certs[0].stdout != certs[1].stdout                         # /etc/etcd is each node's own
        name = f"tls{time.time_ns() % 10**6}"
        made = await svc.create_network(name, node=lab.nodes[0].name)
        try:
            assert made.nodes == {n.name: True for n in lab.nodes}
            net = next(n for n in await svc.networks() if n.name == name)
            assert net.scope == "global" and sorted(net.nodes) == [n.name for n in lab.nodes]
        finally:
            await svc.delete_network(name)
    finally:
        await svc.close()


async def v2_keys(lab) -> list:
    svc = LiveService(lab.inventory)
    try:
        return await svc.etcd_keys("v2")
    finally:
        await svc.close()


def test_runbook_apply_on_a_fresh_lab_puts_etcd_behind_tls(fresh_lab):
    applied = json.loads(cli(fresh_lab.inventory_path, "runbook", "apply", "--json").stdout)
    assert applied["ok"] is True, applied
    probes = next(s for s in applied["steps"] if s["id"] == "probes")
    assert probes["ok"] is True and "0% loss" in probes["detail"]
    assert_tls_from_the_seat(fresh_lab)
    asyncio.run(assert_on_the_nodes(fresh_lab))
    status = json.loads(cli(fresh_lab.inventory_path, "status", "--json").stdout)
    assert status["etcd"]["tls"] is True and status["etcd"]["warning"] is None and status["etcd"]["healthy"]

    # a certificate gone from the operator's PKI is said, then issued again, installed and served without a restart
    pki = ClusterPKI.for_inventory(fresh_lab.inventory)
    node = fresh_lab.nodes[0]
    (pki.root / "nodes" / node.name / "server.crt").unlink()
    status = json.loads(cli(fresh_lab.inventory_path, "status", "--json").stdout)["etcd"]
    assert status["tls"] is True and f"{node.name} server: missing" in status["warning"]
    again = json.loads(cli(fresh_lab.inventory_path, "runbook", "apply", "--json").stdout)
    etcd_step = next(s for s in again["steps"] if s["id"] == "etcd")
    assert again["ok"] is True and "already done" not in etcd_step["detail"], etcd_step
    new = x509.load_pem_x509_certificate((pki.root / "nodes" / node.name / "server.crt").read_bytes())
    assert served_certificate(node.address, pki) == new.public_bytes(serialization.Encoding.DER)
    assert json.loads(cli(fresh_lab.inventory_path, "status", "--json").stdout)["etcd"]["warning"] is None


def test_plaintext_is_said_and_an_earlier_plaintext_cluster_migrates_to_tls_only_with_force(fresh_lab3, tmp_path):
    lab = fresh_lab3
    plain_inv = tmp_path / "plain.toml"
    plain_inv.write_text(Path(lab.inventory_path).read_text().replace("[cluster]\n", "[cluster]\netcd_tls = false\n"))
    plan = json.loads(cli(str(plain_inv), "runbook", "plan", "--json").stdout)
    etcd = next(s for s in plan["steps"] if s["id"] == "etcd")
    assert etcd["commands"][0].startswith("members: ")
    for node, cmd in zip(lab.nodes, etcd["commands"][1:]):
        assert cmd.startswith(f"{node.name}: etcd --name {node.name} ")
        assert f"--listen-client-urls http://{node.address}:2379,http://127.0.0.1:2379" in cmd
        assert "https" not in cmd and "--cert-file" not in cmd and "--client-cert-auth" not in cmd
    assert etcd["commands"][-1] == f"warning: {OPEN_STORE_WARNING}"
    assert "the store is open to the underlay" in OPEN_STORE_WARNING
    assert json.loads(cli(str(plain_inv), "runbook", "apply", "--json").stdout)["ok"] is True
    plain_status = json.loads(cli(str(plain_inv), "status", "--json").stdout)["etcd"]
    assert (plain_status["tls"], plain_status["warning"]) == (False, OPEN_STORE_WARNING)
    net_id = next(n["id"] for n in json.loads(cli(str(plain_inv), "status", "--json").stdout)["networks"]
                  if n["name"] == "demo")

    # the inventory now wants TLS (the default): reported, refused without --force, nothing changed
    status = json.loads(cli(lab.inventory_path, "status", "--json").stdout)["etcd"]
    assert (status["tls"], status["warning"]) == (False, PLAINTEXT_WHILE_TLS_WANTED) and status["healthy"]
    refused = json.loads(cli(lab.inventory_path, "runbook", "apply", "--json", check=False).stdout)
    etcd_step = next(s for s in refused["steps"] if s["id"] == "etcd")
    assert refused["ok"] is False and etcd_step["ok"] is False
    assert "runs in plaintext" in etcd_step["detail"] and "runbook apply --force" in etcd_step["detail"]
    assert any(k.key.startswith("/docker/nodes/") for k in asyncio.run(v2_keys(lab)))   # still browsable
    unconfirmed = cli(lab.inventory_path, "runbook", "apply", "--force", check=False)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr

    migrated = json.loads(cli(lab.inventory_path, "runbook", "apply", "--force", "--yes", "--json").stdout)
    assert migrated["ok"] is True, migrated
    after = json.loads(cli(lab.inventory_path, "status", "--json").stdout)
    assert after["etcd"]["tls"] is True and after["etcd"]["warning"] is None
    assert all(u.startswith("https://") for m in after["etcd"]["members"] for u in m["peer_urls"] + m["client_urls"])
    assert next(n["id"] for n in after["networks"] if n["name"] == "demo") == net_id     # Docker's keys kept
    assert_tls_from_the_seat(lab)
