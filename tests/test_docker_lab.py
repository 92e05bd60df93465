"""The Docker control plane on the real lab: cluster store, overlay networks, VNIs, probes, pings.

Every check that matters is made with the node's own tools over SSH (`docker info`,
`docker network ls`, tcpdump), not only through our SDK clients.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from core.errors import DockerError, UsageError
from core.live import LiveService
from core.ssh import SSHPool

pytestmark = pytest.mark.lab



@pytest.fixture
async def svc2(classic2):
    s = LiveService(classic2.inventory)
    yield s
    await s.close()


@pytest.fixture
async def svc3(classic3):
    s = LiveService(classic3.inventory)
    yield s
    await s.close()


async def _on_nodes(pool: SSHPool, nodes, command: str) -> list[str]:
    res = await asyncio.gather(*(pool.run(n, command, check=True) for n in nodes))
    return [r.stdout.strip() for r in res]


async def test_store_apply_sets_cluster_store_keeps_daemon_json_and_second_apply_is_a_noop(classic2, svc2):
    nodes = classic2.nodes
    # the node's own 20.10 CLI (a newer CLI earlier on this machine's PATH no longer knows ClusterStore)
    stores = await _on_nodes(svc2.pool, nodes, "/usr/bin/docker info --format '{{.ClusterStore}} {{.ClusterAdvertise}}'")
    assert stores == [f"etcd://{n.address}:2379 {n.address}:2375" for n in nodes]
    for n in nodes:
        cfg = json.loads((await svc2.pool.run(n, "cat /etc/docker/daemon.json", check=True)).stdout)
        bak = json.loads((await svc2.pool.run(n, "cat /etc/docker/daemon.json.overlay-tui.bak", check=True)).stdout)
        assert cfg["cluster-store"] == f"etcd://{n.address}:2379" and cfg["cluster-advertise"] == f"{n.address}:2375"
        assert "bip" in cfg and "default-address-pools" in cfg          # the lab's own keys survive
        assert {k: cfg[k] for k in bak} == bak and "cluster-store" not in bak
    pids = await _on_nodes(svc2.pool, nodes, "cat /var/run/docker.pid")
    changes = await svc2.docker_store_apply()
    assert [c.action for c in changes] == ["none"] * len(nodes)
    assert await _on_nodes(svc2.pool, nodes, "cat /var/run/docker.pid") == pids
    assert [c.action for c in await svc2.docker_store_plan()] == ["none"] * len(nodes)


async def test_dockerd_listens_on_no_tcp_port(classic2, svc2):
    for n in classic2.nodes:
        pid = (await svc2.pool.run(n, "cat /var/run/docker.pid", check=True)).stdout.strip()
        listening = (await svc2.pool.run(n, "ss -ltnp", check=True)).stdout
        mine = [ln for ln in listening.splitlines() if f"pid={pid}," in ln]
        assert all(":7946" in ln for ln in mine), mine   # gossip only: never 2375/2376


async def test_network_created_on_node1_converges_on_every_node(classic3, svc3):
    name = "conv-test"
    res = await svc3.create_network(name, subnet="198.19.181.0/24", node="docker-node1")
    try:
        assert res.nodes == {n.name: True for n in classic3.nodes} and res.seconds < 10
        seen = await _on_nodes(svc3.pool, classic3.nodes,
                               f"docker network ls --no-trunc --filter name=^{name}$ --format '{{{{.ID}}}} {{{{.Scope}}}} {{{{.Driver}}}}'")
        assert seen == [f"{res.id} global overlay"] * 3
        info = next(n for n in await svc3.networks() if n.name == name)
        assert (info.id, info.scope, info.subnet, info.nodes) == (res.id, "global", "198.19.181.0/24",
                                                                  [n.name for n in classic3.nodes])
    finally:
        await svc3.delete_network(name)
    gone = await _on_nodes(svc3.pool, classic3.nodes, f"docker network ls -q --filter name=^{name}$")
    assert gone == [""] * 3


async def test_ping_matrix_is_full_by_name_and_address(classic3, svc3):
    net = "ping-test"
    await svc3.create_network(net, subnet="198.19.182.0/24")
    try:
        started = await svc3.start_probes(net)
        assert set(started) == {n.name for n in classic3.nodes}
        assert set((await svc3.start_probes(net)).values()) == {"kept"}     # idempotent
        # one node's probe replaced on demand (the runbook's way out for a node that resolves no name)
        node2 = classic3.nodes[1]
        ids = f"docker ps -q --no-trunc --filter label=overlay-tui.probe={net}"
        before = (await svc3.pool.run(node2, ids, check=True)).stdout.strip()
        again = await svc3.start_probes(net, frozenset({node2.name}))
        assert again == {n.name: ("started again" if n is node2 else "kept") for n in classic3.nodes}, again
        after = (await svc3.pool.run(node2, ids, check=True)).stdout.strip()
        assert before and after and after != before
        # a probe stops at once (no 10 s wait for `sleep` to ignore SIGTERM on every dockerd restart)
        signals = await _on_nodes(svc3.pool, classic3.nodes,
                                  f"docker ps --filter label=overlay-tui.probe={net} --format '{{{{.Names}}}}' "
                                  "| xargs docker inspect --format '{{.Config.StopSignal}}'")
        assert signals == ["SIGKILL"] * 3, signals
        results = await svc3.ping_matrix()
        pairs = {(r.src, r.dst, r.by) for r in results}
        assert len(results) == len(pairs) == 3 * 2 * 2
        bad = [r for r in results if r.error or r.sent != 3 or r.received != 3]
        assert not bad, bad
        assert all(r.rtt_ms is not None and r.rtt_ms > 0 for r in results)
        by_addr = {r.target for r in results if r.by == "address"}
        assert all(a.startswith("198.19.182.") for a in by_addr)
    finally:
        await svc3.remove_probes(net)
        await svc3.delete_network(net)


async def _tcpdump_vnis(pool: SSHPool, node, seconds: float = 6) -> str:
    iface = (await pool.run(node, f"ip -o -4 addr show | awk '$4 ~ /^{re.escape(node.address)}\\// {{print $2}}'",
                            check=True)).stdout.strip()
    res = await pool.run(node, f"timeout {seconds:g} tcpdump -l -nn -i {iface} -c 6 udp port 4789 2>/dev/null",
                         timeout=seconds + 5)
    return res.stdout


async def test_announcing_a_node_again_recreates_its_store_entry_and_keeps_the_gossip_whole(classic3, svc3):
    from core.dockerd import store
    from core.etcd.tls import CA, CLIENT_CRT, CLIENT_KEY

    inv = classic3.inventory
    names = [n.name for n in inv.nodes]
    ips = await svc3.addresses.all(inv.nodes)
    adv = f"{ips[names[0]]}:2375"
    tls = f" --ca-file {CA} --cert-file {CLIENT_CRT} --key-file {CLIENT_KEY}" if inv.cluster.etcd_tls else ""
    get = (f"ETCDCTL_API=2 etcdctl --endpoints {store._store_v2_url(inv, ips[names[1]])}{tls} "
           f"-o extended get /docker/nodes/{adv}")

    async def entry() -> dict[str, str]:
        out = (await svc3.pool.run(names[1], get, check=True)).stdout
        fields = dict(ln.split(": ", 1) for ln in out.splitlines() if ": " in ln)
        return {**fields, "value": out.strip().splitlines()[-1]}

    before = await entry()
    note = await store.reannounce_in_store(svc3.pool, inv, ips, adv)
    assert note.startswith(f"the store announced {adv} again, through "), note
    after = await entry()
    assert int(after["Created-Index"]) > int(before["Created-Index"]), (before, after)   # made again: a new node
    assert after["value"] == adv and 0 < int(after["TTL"]) <= store.NODES_TTL
    assert await store.settle_gossip(svc3.pool, names, ips) == {}      # nodes already in ignore it


async def test_vni_from_etcd_matches_the_wire(classic2, svc2):
    net = "vni-test"
    await svc2.create_network(net, subnet="198.19.183.0/24")
    try:
        await svc2.start_probes(net)
        info = next(n for n in await svc2.networks() if n.name == net)
        assert info.vni is not None and info.vni >= 256
        assert {c.name for c in info.containers} == {f"probe-{n.name}" for n in classic2.nodes}
        capture = asyncio.create_task(_tcpdump_vnis(svc2.pool, classic2.nodes[0]))
        await asyncio.sleep(1.0)
        results = await svc2.ping_matrix()
        out = await capture
        wire = {int(v) for v in re.findall(r"vni (\d+)", out)}
        assert wire == {info.vni}, out
        assert all(r.received == 3 for r in results)
    finally:
        await svc2.remove_probes(net)
        await svc2.delete_network(net)


async def test_delete_refuses_while_containers_are_attached(classic2, svc2):
    net = "del-test"
    await svc2.create_network(net, subnet="198.19.184.0/24")
    await svc2.start_probes(net)
    with pytest.raises(DockerError, match=r"still has containers attached: probe-docker-node1@docker-node1, "
                                          r"probe-docker-node2@docker-node2"):
        await svc2.delete_network(net)
    assert any(n.name == net for n in await svc2.networks())
    removed = await svc2.remove_probes(net)
    assert sorted(removed) == ["probe-docker-node1@docker-node1", "probe-docker-node2@docker-node2"]
    await svc2.delete_network(net)
    assert not any(n.name == net for n in await svc2.networks())


async def test_bad_names_subnets_and_duplicates_give_clear_errors(classic2, svc2):
    with pytest.raises(UsageError, match="'no good' is not a valid Docker name"):
        await svc2.create_network("no good")
    with pytest.raises(UsageError, match="has host bits set; did you mean 198.19.185.0/24"):
        await svc2.create_network("x", subnet="198.19.185.7/24")
    await svc2.create_network("dup-test", subnet="198.19.186.0/24")
    try:
        with pytest.raises(UsageError, match="a network named 'dup-test' already exists"):
            await svc2.create_network("dup-test", subnet="198.19.187.0/24")
        with pytest.raises(UsageError, match="overlaps 198.19.186.0/24 of network dup-test"):
            await svc2.create_network("other", subnet="198.19.186.128/25")
        with pytest.raises(DockerError, match="no overlay network named 'nope'"):
            await svc2.delete_network("nope")
        # the underlay (198.18.K.0/24 in the lab) and Docker's bridges (docker0 198.19.255.0/24) are refused too
        underlay = classic2.nodes[0].address.rsplit(".", 1)[0] + ".0/24"
        with pytest.raises(UsageError, match=rf"overlaps {underlay} of the underlay \(eth0\) on docker-node1"):
            await svc2.create_network("under", subnet="198.18.0.0/16")
        with pytest.raises(UsageError, match=r"overlaps 198.19.255.0/24 of (Docker's bridge docker0|network 'bridge'|network bridge)"):
            await svc2.create_network("bridged", subnet="198.19.255.0/25")
        assert not any(n.name in ("under", "bridged") for n in await svc2.networks())
    finally:
        await svc2.delete_network("dup-test")


async def test_read_only_service_refuses_changes(classic2):
    from core.errors import ReadOnlyError

    svc = LiveService(classic2.inventory, read_only=True)
    try:
        with pytest.raises(ReadOnlyError, match="creating a network"):
            await svc.create_network("ro-test")
        assert any(n.name == "bridge" for n in await svc.networks())
    finally:
        await svc.close()


async def test_a_dockerd_that_fails_to_restart_is_reported_with_its_log(classic2, svc2):
    """daemon.json with a key dockerd rejects: the apply keeps the key (never clobbers) and says why it died."""
    from core.dockerd.store import DAEMON_JSON, apply_node, wait_for_store

    node = classic2.nodes[1]
    original = (await svc2.pool.run(node, f"cat {DAEMON_JSON}", check=True)).stdout
    broken = {k: v for k, v in json.loads(original).items() if k != "cluster-advertise"}
    broken["bogus-key-for-test"] = True
    await svc2.pool.run(node, f"cat > {DAEMON_JSON}", input=json.dumps(broken), check=True)
    try:
        with pytest.raises(DockerError, match=r"(?s)dockerd exited right after the restart.*bogus-key-for-test"):
            await apply_node(svc2.docker, svc2.pool, svc2.addresses, classic2.inventory, node.name)
        kept = json.loads((await svc2.pool.run(node, f"cat {DAEMON_JSON}", check=True)).stdout)
        assert kept["bogus-key-for-test"] is True and kept["cluster-advertise"] == f"{node.address}:2375"
    finally:
        await svc2.pool.run(node, f"cat > {DAEMON_JSON}", input=original, check=True)
        if not (await svc2.pool.run(node, "kill -0 $(cat /var/run/docker.pid)")).ok:
            pid = await svc2.pool.start_detached(node, "dockerd", "/var/log/dockerd.log")
            await wait_for_store(svc2.docker, svc2.pool, node.name, f"etcd://{node.address}:2379", False, pid)
    assert [c.action for c in await svc2.docker_store_plan()] == ["none", "none"]
    bak = json.loads((await svc2.pool.run(node, "cat /etc/docker/daemon.json.overlay-tui.bak", check=True)).stdout)
    assert "cluster-store" not in bak and "bogus-key-for-test" not in bak     # the first original stays


async def test_a_node_whose_dockerd_is_down_is_named_not_fatal(classic2, svc2):
    """networks() still answers from the other node and says which node is missing; nothing hangs."""
    import time

    from core.dockerd.store import wait_for_store

    node = classic2.nodes[1]
    await svc2.create_network("down-test", subnet="198.19.188.0/24")
    pid = int((await svc2.pool.run(node, "cat /var/run/docker.pid", check=True)).stdout)
    await svc2.pool.kill(node, pid, wait=30)
    try:
        t0 = time.monotonic()
        listing = await svc2.network_listing()
        assert time.monotonic() - t0 < 10
        net = next(n for n in listing.networks if n.name == "down-test")
        assert net.nodes == ["docker-node1"]
        assert "docker-node2" in listing.problems["docker-node2"]
        with pytest.raises(DockerError, match="docker-node2: cannot reach the Docker daemon"):
            await svc2.start_probes("down-test")
        # node1's probe started; the delete names it and says node2 could not be looked at
        with pytest.raises(DockerError, match=r"still has containers attached: probe-docker-node1@docker-node1 "
                                              r"\(docker-node2 did not answer, so"):
            await svc2.delete_network("down-test")
    finally:
        new = await svc2.pool.start_detached(node, "dockerd", "/var/log/dockerd.log")
        await wait_for_store(svc2.docker, svc2.pool, node.name, f"etcd://{node.address}:2379", False, new)
        await svc2.remove_probes("down-test")
        await svc2.delete_network("down-test")


@pytest.fixture(scope="module")
def swarm_lab():
    """A 2-node lab of its own in swarm mode (the overlay of every Docker since 1.12)."""
    from conftest import lab_name, require_lab, start_lab, stop_lab

    require_lab()
    name = lab_name("s")
    lab = start_lab(name, 2)
    try:
        yield lab
    finally:
        stop_lab(name)


async def test_swarm_mode_networks_vni_probes_and_the_store_refusal(swarm_lab):
    n1, n2 = swarm_lab.nodes
    svc = LiveService(swarm_lab.inventory)
    try:
        token = (await svc.pool.run(n1, f"docker swarm init --advertise-addr {n1.address} "
                                        "--default-addr-pool 198.19.128.0/18 >/dev/null && "
                                        "docker swarm join-token -q worker", check=True)).stdout.strip()
        await svc.pool.run(n2, f"docker swarm join --token {token} {n1.address}:2377", check=True)
        await svc.pool.run(n1, "docker network create -d overlay --attachable --subnet 198.19.178.0/24 sw", check=True)
        await svc.start_probes("sw")
        net = next(n for n in await svc.networks() if n.name == "sw")
        assert (net.scope, net.nodes) == ("swarm", ["docker-node1", "docker-node2"])
        wire = (await svc.pool.run(n1, "docker network inspect sw --format "
                                       "'{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}'",
                                   check=True)).stdout.strip()
        assert net.vni is not None and net.vni >= 4096 and str(net.vni) == wire.split(",")[0]
        results = await svc.ping_matrix()
        assert len(results) == 4 and all(r.received == 3 for r in results), results
        before = (await svc.pool.run(n1, "cat /etc/docker/daemon.json", check=True)).stdout
        with pytest.raises(DockerError, match="part of a swarm.*docker swarm leave.*nothing was changed"):
            await svc.docker_store_apply()
        assert (await svc.pool.run(n1, "cat /etc/docker/daemon.json", check=True)).stdout == before
    finally:
        await svc.close()
