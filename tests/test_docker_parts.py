"""The Docker control plane's pure parts: validation, parsing, merging, restart arguments (no lab)."""
from __future__ import annotations

import asyncio
import io
import json
import tarfile

import pytest

from core.dockerd.networks import merge_networks
from core.dockerd.probes import parse_ping, probe_rootfs_tar, static_elf_arch
from core.dockerd.store import _parse_facts, engine_supports_classic, restart_args
from core.dockerd.validation import require_valid
from core.dockerd.vni import parse_overlay_dir, store_endpoint, swarm_vni
from core.errors import DockerError, UsageError
from core.model import NetworkInfo

BUSYBOX_OK = """PING probe-docker-node2 (198.19.2.3): 56 data bytes
64 bytes from 198.19.2.3: seq=0 ttl=64 time=0.310 ms
64 bytes from 198.19.2.3: seq=1 ttl=64 time=0.120 ms
64 bytes from 198.19.2.3: seq=2 ttl=64 time=0.101 ms

--- probe-docker-node2 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.101/0.177/0.310 ms
"""


def test_parse_ping_reads_busybox_summary():
    assert parse_ping(BUSYBOX_OK) == (3, 3, 0.177, None)
    lossy = "3 packets transmitted, 1 packets received, 66% packet loss\nround-trip min/avg/max = 1.0/1.5/2.0 ms"
    assert parse_ping(lossy) == (3, 1, 1.5, None)
    assert parse_ping("3 packets transmitted, 0 packets received, 100% packet loss\n") == (3, 0, None, None)
    assert parse_ping("ping: bad address 'probe-x'\n") == (0, 0, None, "ping: bad address 'probe-x'")


@pytest.mark.parametrize("name", ["demo", "a", "net_1.x-2", "A" * 100])
def test_valid_network_names(name):
    assert require_valid(name, None) is None


@pytest.mark.parametrize("name,why", [("", "name: required"), ("-x", "start with a letter"), ("a b", "letters"),
                                      ("a/b", "letters"), ("bridge", "predefines"), ("host", "predefines")])
def test_invalid_network_names_are_usage_errors_that_say_why(name, why):
    with pytest.raises(UsageError, match=why) as err:
        require_valid(name, None)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("subnet,why", [("10.0.0.1/24", "did you mean 10.0.0.0/24"), ("foo", "prefix length"),
                                        ("10.0.0.0/33", "IPv4 CIDR"), ("fd00::/64", "IPv4"),
                                        ("10.0.0.0/31", "too small.*/8 to /30"), ("10.0.0.0/7", "too large"),
                                        ("198.19.10.0", "prefix length, e.g. 198.19.10.0/24")])
def test_invalid_subnets_are_usage_errors_that_say_why(subnet, why):
    with pytest.raises(UsageError, match=why):
        require_valid("demo", subnet)


def test_valid_subnet_and_clashes_with_existing_networks():
    assert require_valid("demo", " 198.19.40.0/24 ") == "198.19.40.0/24"
    existing = [NetworkInfo(id="abc" * 10, name="demo", driver="overlay", scope="global", subnet="198.19.40.0/24",
                            vni=256, nodes=["n1"])]
    with pytest.raises(UsageError, match="already exists") as err:
        require_valid("demo", None, existing)
    assert "subnet" not in str(err.value)
    with pytest.raises(UsageError, match="overlaps 198.19.40.0/24 of network demo"):
        require_valid("other", "198.19.0.0/16", existing)
    both = "name: 'a b' is not a valid Docker name"
    with pytest.raises(UsageError, match=f"{both}.*; subnet: 10.0.0.1/24 has host bits"):
        require_valid("a b", "10.0.0.1/24")


def test_engine_23_and_later_is_refused_with_the_way_out():
    engine_supports_classic("n1", "20.10.24+dfsg1")
    engine_supports_classic("n1", "19.03.15")
    with pytest.raises(DockerError, match=r"Docker 24.0.7 no longer supports.*<= 20.10.*swarm"):
        engine_supports_classic("n1", "24.0.7")
    with pytest.raises(DockerError, match="23.0"):
        engine_supports_classic("n1", "23.0.0")


def test_restart_args_drop_store_flags_and_keep_the_rest():
    args = ["dockerd", "--cluster-store=etcd://1.2.3.4:2379", "--cluster-advertise", "1.2.3.4:2375",
            "--data-root", "/x", "--debug"]
    assert restart_args(args) == ["dockerd", "--data-root", "/x", "--debug"]
    assert restart_args([]) == ["dockerd"]


def test_facts_parse_daemon_json_and_refuse_a_broken_one():
    out = "direct\npid=42\narg=dockerd\narg=--debug\n--daemon.json--\n" + json.dumps({"bip": "198.19.255.1/24"})
    f = _parse_facts("n1", out, "20.10.24", {"ClusterStore": "", "ClusterAdvertise": ""})
    assert (f.systemd, f.pid, f.args, f.daemon_json) == (False, 42, ["dockerd", "--debug"], {"bip": "198.19.255.1/24"})
    f = _parse_facts("n1", "systemd\npid=\n--daemon.json--\n", "20.10.24", {})
    assert (f.systemd, f.pid, f.daemon_json) == (True, None, None)
    with pytest.raises(DockerError, match="not valid JSON.*will not overwrite"):
        _parse_facts("n1", "direct\npid=1\n--daemon.json--\n{bip:", "20.10.24", {})


def test_overlay_dir_vnis_skip_unallocated():
    body = json.dumps({"node": {"nodes": [
        {"key": "/docker/network/v1.0/overlay/network/aaa", "value": json.dumps({"subnets": [{"Vni": 256}]})},
        {"key": "/docker/network/v1.0/overlay/network/bbb", "value": json.dumps({"subnets": [{"Vni": 0}]})},
    ]}}).encode()
    assert parse_overlay_dir(body) == {"aaa": 256}
    assert store_endpoint("etcd://198.18.2.1:2379") == ("198.18.2.1", 2379)
    assert store_endpoint("etcd://a:1,b:2/path") == ("a", 1)
    assert store_endpoint("consul://x:1") is None
    assert swarm_vni({"Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097,4098"}}) == 4097
    assert swarm_vni({"Options": {}}) is None


def _net(nid, name, scope="global", driver="overlay", containers=None):
    return {"Id": nid, "Name": name, "Driver": driver, "Scope": scope, "Attachable": True,
            "IPAM": {"Config": [{"Subnet": "198.19.9.0/24"}]}, "Containers": containers or {}}


def test_merge_by_id_lists_nodes_and_each_nodes_containers():
    c1 = {"c1id": {"Name": "p1", "MacAddress": "02:42:c6:13:09:02", "IPv4Address": "198.19.9.2/24"},
          "ep-remote": {"Name": "p2"}}
    c2 = {"c2id": {"Name": "p2", "MacAddress": "02:42:c6:13:09:03", "IPv4Address": "198.19.9.3/24"}}
    per_node = {"n1": [_net("X", "demo", containers=c1), _net("B1", "bridge", "local", "bridge")],
                "n2": [_net("X", "demo", containers=c2), _net("B2", "bridge", "local", "bridge")]}
    nets = merge_networks(per_node, {"X": 256})
    demo = nets[0]
    assert (demo.name, demo.vni, demo.nodes, demo.subnet) == ("demo", 256, ["n1", "n2"], "198.19.9.0/24")
    assert [(c.name, c.node, c.ip) for c in demo.containers] == [("p1", "n1", "198.19.9.2"), ("p2", "n2", "198.19.9.3")]
    assert sorted((n.id, tuple(n.nodes)) for n in nets[1:]) == [("B1", ("n1",)), ("B2", ("n2",))]


def test_probe_image_is_static_busybox_with_applets():
    with open("/bin/busybox", "rb") as f:
        data = f.read()
    assert static_elf_arch(data, "/bin/busybox") in ("x86_64", "aarch64")
    with tarfile.open(fileobj=io.BytesIO(probe_rootfs_tar(data))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].size == len(data) and members["bin/busybox"].mode == 0o755
    assert members["bin/ping"].issym() and members["bin/ping"].linkname == "busybox"
    with pytest.raises(DockerError, match="not a 64-bit ELF"):
        static_elf_arch(b"#!/bin/sh\n", "x")


def test_dynamic_busybox_is_refused_with_the_package_to_install():
    with open("/bin/ls", "rb") as f:          # any dynamically linked executable
        data = f.read()
    with pytest.raises(DockerError, match="dynamically linked.*busybox-static"):
        static_elf_arch(data, "/bin/ls")


def test_restart_command_follows_how_the_host_runs_docker():
    from core.dockerd.store import NodeDockerFacts, restart_command

    direct = NodeDockerFacts("n1", "20.10.24", "", "", systemd=False, pid=16, args=["dockerd", "--debug"])
    assert restart_command(direct) == ("kill 16 (wait until gone); "
                                       "nohup setsid dockerd --debug >> /var/log/dockerd.log 2>&1 < /dev/null &")
    assert restart_command(NodeDockerFacts("n1", "20.10.24", "", "", systemd=True, pid=16)) == "systemctl restart docker"
    # a dead dockerd starts again as we last started it (saved argv), the log appended, never truncated
    dead = NodeDockerFacts("n1", "", "", "", systemd=False, pid=None, running=False, saved_args=["dockerd", "--debug"])
    assert restart_command(dead) == "nohup setsid dockerd --debug >> /var/log/dockerd.log 2>&1 < /dev/null &"
    assert restart_command(NodeDockerFacts("n1", "", "", "", systemd=False, pid=None, running=False)).startswith(
        "nohup setsid dockerd >> ")


class _Engine:
    """Stands in for DockerNodes: answers version() and info() only (the pure decision logic is tested)."""

    def __init__(self, version: str, info: dict | None = None) -> None:
        self.version, self.info = version, info or {"ClusterStore": "", "ClusterAdvertise": ""}

    async def call(self, node, fn):
        engine = self

        class Client:
            def version(self):
                return {"Version": engine.version}

            def info(self):
                return engine.info
        return fn(Client())


class _Shell:
    """Stands in for SSHPool: records commands, answers the facts script with ``facts``."""

    def __init__(self, inv, facts: str) -> None:
        self.inv, self.facts, self.commands = inv, facts, []

    def spec(self, node):
        return self.inv.node(node) if isinstance(node, str) else node

    async def run(self, node, command, **kw):
        from core.model import CommandResult
        self.commands.append(command)
        return CommandResult(node, command, 0, self.facts, "", 0.01)


def _inv():
    from core.model import ClusterSpec, Inventory, NodeSpec
    return Inventory(path="x.toml", nodes=(NodeSpec("n1", "198.18.9.1"),), cluster=ClusterSpec())


async def test_a_docker_23_engine_is_refused_before_anything_is_touched():
    """plan/apply read the engine version first; nothing is written or restarted on a 24.0 engine."""
    from core.dockerd import store as docker_store
    from core.nodes.address import UnderlayAddresses

    inv = _inv()
    shell = _Shell(inv, "direct\npid=7\narg=dockerd\n--daemon.json--\n{}")
    with pytest.raises(DockerError, match=r"n1: Docker 24.0.7 no longer supports the classic.*nothing was changed"):
        await docker_store.apply(_Engine("24.0.7"), shell, UnderlayAddresses(shell), inv)
    assert shell.commands == [docker_store.FACTS_SCRIPT]        # read only: no write, no kill, no start
    plan = await docker_store.plan(_Engine("24.0.7"), shell, UnderlayAddresses(shell), inv)
    assert plan[0].action == "unknown" and "24.0.7" in plan[0].reason


async def test_store_flags_in_a_systemd_unit_are_refused_with_the_fix():
    from core.dockerd import store as docker_store
    from core.nodes.address import UnderlayAddresses

    inv = _inv()
    shell = _Shell(inv, "systemd\npid=7\narg=/usr/bin/dockerd\narg=--cluster-store=etcd://10.1.1.1:2379\n"
                        "--daemon.json--\n{}")
    with pytest.raises(DockerError, match=r"--cluster-store=etcd://10.1.1.1:2379 on its command line.*systemctl edit"):
        await docker_store.apply(_Engine("20.10.24"), shell, UnderlayAddresses(shell), inv)
    assert shell.commands == [docker_store.FACTS_SCRIPT]


async def test_plan_says_configure_with_the_merge_and_the_restart():
    from core.dockerd import store as docker_store
    from core.nodes.address import UnderlayAddresses

    inv = _inv()
    shell = _Shell(inv, "direct\npid=7\narg=dockerd\n--daemon.json--\n{\"bip\": \"198.19.255.1/24\"}")
    change = (await docker_store.plan(_Engine("20.10.24"), shell, UnderlayAddresses(shell), inv))[0]
    assert (change.action, change.want_store, change.want_advertise) == \
        ("configure", "etcd://198.18.9.1:2379", "198.18.9.1:2375")
    assert "merge {\"cluster-store\"" in change.command and "kill 7" in change.command
    configured = _Engine("20.10.24", {"ClusterStore": "etcd://198.18.9.1:2379", "ClusterAdvertise": "198.18.9.1:2375"})
    assert '"cluster-store-opts": {"kv.cacertfile": "/etc/etcd/pki/ca.crt"' in change.command   # etcd over TLS
    # without the kv.* opts etcd over TLS needs, daemon.json is written again
    shell.facts = ("direct\npid=7\n--daemon.json--\n"
                   '{"cluster-store": "etcd://198.18.9.1:2379", "cluster-advertise": "198.18.9.1:2375"}')
    assert (await docker_store.plan(configured, shell, UnderlayAddresses(shell), inv))[0].action == "configure"
    shell.facts = ("direct\npid=7\n--daemon.json--\n"
                   '{"cluster-store": "etcd://198.18.9.1:2379", "cluster-advertise": "198.18.9.1:2375", '
                   '"cluster-store-opts": {"kv.cacertfile": "/etc/etcd/pki/ca.crt", '
                   '"kv.certfile": "/etc/etcd/pki/client.crt", "kv.keyfile": "/etc/etcd/pki/client.key"}}')
    assert (await docker_store.plan(configured, shell, UnderlayAddresses(shell), inv))[0].action == "none"


def test_split_outputs_of_the_in_probe_ping_script():
    from core.dockerd.probes import split_outputs

    text = "=== probe-b\n" + BUSYBOX_OK + "=== 198.19.2.3\nping: sendto: Network unreachable\n"
    out = split_outputs(text)
    assert parse_ping(out["probe-b"]) == (3, 3, 0.177, None)
    assert parse_ping(out["198.19.2.3"])[3] == "ping: sendto: Network unreachable"


async def test_a_swarm_node_is_refused_before_anything_is_touched():
    from core.dockerd import store as docker_store
    from core.nodes.address import UnderlayAddresses

    inv = _inv()
    shell = _Shell(inv, "direct\npid=7\narg=dockerd\n--daemon.json--\n{}")
    engine = _Engine("20.10.24", {"ClusterStore": "", "ClusterAdvertise": "", "Swarm": {"LocalNodeState": "active"}})
    with pytest.raises(DockerError, match="part of a swarm.*exclude each other.*docker swarm leave"):
        await docker_store.apply(engine, shell, UnderlayAddresses(shell), inv)
    assert shell.commands == [docker_store.FACTS_SCRIPT]


def test_a_subnet_over_the_underlay_or_a_bridge_is_refused_naming_the_overlap():
    import ipaddress

    from core.dockerd.networks import parse_addresses, refuse_underlay_overlap
    from core.errors import UsageError

    text = ("1: lo    inet 127.0.0.1/8 scope host lo\n"
            "2: eth0    inet 198.18.2.1/24 brd 198.18.2.255 scope global eth0\n"
            "3: docker0    inet 198.19.255.1/24 brd 198.19.255.255 scope global docker0\n")
    addrs = parse_addresses("docker-node1", text)
    assert [(i, str(a)) for _, i, a in addrs] == [("eth0", "198.18.2.1/24"), ("docker0", "198.19.255.1/24")]
    with pytest.raises(UsageError, match=r"subnet 198.18.0.0/16 overlaps 198.18.2.0/24 of the underlay \(eth0\) "
                                         r"on docker-node1 \(address 198.18.2.1\)") as e:
        refuse_underlay_overlap(ipaddress.IPv4Network("198.18.0.0/16"), addrs)
    assert e.value.exit_code == 2
    with pytest.raises(UsageError, match="of Docker's bridge docker0 on docker-node1"):
        refuse_underlay_overlap(ipaddress.IPv4Network("198.19.255.128/25"), addrs)
    refuse_underlay_overlap(ipaddress.IPv4Network("10.0.0.0/24"), addrs)      # no overlap: no error


def test_restart_waves_start_with_the_gossip_seed_alone():
    from core.dockerd.store import gossip_seed, waves

    adv = {f"n{i}": f"198.18.1.{i}:2375" for i in range(1, 17)}
    assert gossip_seed(adv) == "n9"            # "198.18.1.9:2375" sorts after "198.18.1.16:2375"
    names = list(adv)
    plan = waves(names, 4, first="n9")
    assert plan[0] == ["n9"] and all(len(w) <= 4 for w in plan[1:])
    assert sorted(n for w in plan for n in w) == sorted(names)
    assert waves(["a", "b", "c"], 4) == [["a"], ["b", "c"]] and waves([], 4) == []


# --- the overlay's gossip: read from dockerd's log, judged across nodes, healed by restarting alone ----------
def test_gossip_view_follows_serf_events_since_the_dockerd_started():
    from core.dockerd.store import gossip_view

    lines = ["direct", "gossip-log", "gossip=Join 198.18.1.3", "gossip=Join 198.18.1.1", "gossip=Join 198.18.1.2",
             "gossip=Leave 198.18.1.2", "gossip=Failed 198.18.1.1", "gossip=Join 198.18.1.1", "--daemon.json--"]
    assert gossip_view(lines) == {"198.18.1.3", "198.18.1.1"}
    assert gossip_view(["gossip-log"]) == frozenset()          # started, never joined: knows nobody
    assert gossip_view(["direct", "pid=7"]) is None            # no start line in the log: it cannot say


def test_gossip_outsiders_names_who_is_out_and_why():
    from core.dockerd.store import gossip_outsiders

    ips = {f"n{i}": f"198.18.1.{i}" for i in range(1, 6)}
    every = frozenset(ips.values())
    assert gossip_outsiders({n: every for n in ips}, ips) == {}
    # two clusters: {n1, n2} joined each other while the rest formed the main one
    split = {"n1": frozenset({"198.18.1.1", "198.18.1.2"}), "n2": frozenset({"198.18.1.1", "198.18.1.2"}),
             **{n: frozenset({"198.18.1.3", "198.18.1.4", "198.18.1.5"}) for n in ("n3", "n4", "n5")}}
    out = gossip_outsiders(split, ips)
    assert sorted(out) == ["n1", "n2"]
    assert out["n1"] == "out of the overlay's gossip: n3, n4, n5 do not know it (it knows 2 of 5 node(s))"
    # alone (its join failed), and one whose log cannot say: judged by what the others see
    alone = {**{n: every - {"198.18.1.5"} for n in ("n1", "n2", "n3")}, "n4": None, "n5": frozenset({"198.18.1.5"})}
    out = gossip_outsiders(alone, ips)
    assert list(out) == ["n5"] and "it knows 1 of 5" in out["n5"]
    # a node the others know but that does not know all of them yet (gossip still spreading) is out too
    lag = {**{n: every for n in ("n1", "n2", "n3", "n4")}, "n5": every - {"198.18.1.2"}}
    assert gossip_outsiders(lag, ips) == {"n5": "out of the overlay's gossip: it knows 4 of 5 node(s), not n2"}
    # addresses of nodes not judged here (not configured yet, or removed) do not count
    assert gossip_outsiders({"n1": every, "n2": frozenset({"198.18.1.1", "198.18.1.2", "10.9.9.9"})}, ips) == {}


class FakeFleet:
    """n1..nN configured by a fake apply: every restart is an event; the nodes in ``out`` see ``view_of(node)``
    as their gossip, the others the running nodes not out. Tests change ``out`` from their fakes."""

    def __init__(self, count: int, out: set[str], view_of) -> None:
        from types import SimpleNamespace

        self.names = [f"n{i}" for i in range(1, count + 1)]
        self.ips = {n: f"198.18.1.{n[1:]}" for n in self.names}
        self.inventory = SimpleNamespace(nodes=[SimpleNamespace(name=n) for n in self.names])
        self.events: list[str] = []
        self.running: set[str] = set()
        self.out, self.view_of = out, view_of

    async def all(self, nodes):                    # the UnderlayAddresses the apply is given
        return self.ips

    async def apply(self, monkeypatch, wave: int, **fakes):
        from core.dockerd import store

        async def plan_node(docker, pool, addresses, inv, node):
            facts = store.NodeDockerFacts(node, "20.10", "", "", False, pid=1)
            return store.DockerStoreChange(node, "configure", "x", want_store="etcd://s",
                                           want_advertise=f"{self.ips[node]}:2375", facts=facts)

        async def change_node(docker, pool, node, change, facts):
            self.events.append(f"restart {node}")
            self.running.add(node)

        async def gossip_views(pool, nodes):
            main = frozenset(self.ips[n] for n in nodes if n in self.running and n not in self.out)
            return {n: (self.view_of(n) if n in self.out else main) for n in nodes}

        for name, fn in {"plan_node": plan_node, "_change_node": change_node, "gossip_views": gossip_views,
                         **fakes}.items():
            monkeypatch.setattr(store, name, fn)
        monkeypatch.setattr(store, "GOSSIP_SETTLE", 0.0)
        monkeypatch.setattr(store, "FIRST_SETTLE", 0.0)
        return {c.node: c for c in await store.apply(None, None, self, self.inventory, wave=wave)}


async def test_apply_restarts_in_waves_then_rejoins_outsiders_one_at_a_time(monkeypatch):
    """Seed alone, then waves; a wave that leaves nodes out: they all stop, leave the store's node list,
    and start one at a time, each once the previous has joined; the next wave only after that."""
    from core.dockerd import store

    partition = {"n2", "n3"}          # the first wave after the seed splits off: n2 and n3 joined each other
    fleet = FakeFleet(7, partition, lambda n: frozenset(fleet.ips[m] for m in partition))
    events = fleet.events

    async def node_facts(docker, pool, node):
        return store.NodeDockerFacts(node, "20.10", "etcd://s", "", False, pid=2)

    async def stop_docker(pool, node, facts):
        events.append(f"stop {node}")
        fleet.running.discard(node)

    async def forget_in_store(pool, inv, ips_, advertise):
        events.append(f"forget {' '.join(advertise)}")
        return "forgotten"

    async def reannounce_in_store(pool, inv, ips_, advertise):
        raise AssertionError("a split is not mended by an announce (both joined already): never tried for it")

    async def start_docker(pool, node, facts):
        events.append(f"start {node}")
        partition.discard(node)         # started alone, it joins the main gossip
        fleet.running.add(node)
        return 9

    async def wait_for_store(*a, **kw):
        return None

    by = await fleet.apply(monkeypatch, 3, node_facts=node_facts, stop_docker=stop_docker,
                           forget_in_store=forget_in_store, start_docker=start_docker, wait_for_store=wait_for_store,
                           reannounce_in_store=reannounce_in_store)
    assert events == ["restart n7",                                 # the seed: "198.18.1.7:2375" sorts last
                      "restart n1", "restart n2", "restart n3",         # a wave of 3: n2 and n3 end up apart
                      "stop n2", "stop n3", "forget 198.18.1.2:2375 198.18.1.3:2375", "start n2", "start n3",
                      "restart n4", "restart n5", "restart n6"]         # the next wave only once all are in
    assert "rejoined the gossip" in by["n2"].reason and "restarted alone" in by["n2"].reason
    assert "rejoin" not in by["n1"].reason


async def test_a_node_whose_join_failed_comes_in_when_a_node_is_announced_again_without_a_restart(monkeypatch):
    """A wave-mate picked to join was not listening yet: the node is alone. Announcing a node of the whole
    gossip again in the store makes it try again (no restart); the apply says so in its reason."""
    alone = {"n2"}
    fleet = FakeFleet(5, alone, lambda n: frozenset({fleet.ips[n]}))

    async def reannounce_in_store(pool, inv, ips_, advertise):
        fleet.events.append(f"announce {advertise}")
        alone.clear()                                  # its join is tried again, at a listening node
        return f"the store announced {advertise} again"

    async def refuse(*a, **kw):
        raise AssertionError("nothing restarts alone when the announce brought every node in")

    by = await fleet.apply(monkeypatch, 2, reannounce_in_store=reannounce_in_store, rejoin=refuse)
    assert fleet.events == ["restart n5", "restart n1", "restart n2",
                            "announce 198.18.1.5:2375",       # n2 alone after its wave: n5 (the seed) announced again
                            "restart n3", "restart n4"]
    assert "out of the overlay's gossip" in by["n2"].reason
    assert "joined the gossip once the store announced 198.18.1.5:2375 again" in by["n2"].reason
    assert "joined" not in by["n1"].reason


async def test_a_lonely_node_the_announce_does_not_bring_in_restarts_alone_and_says_both(monkeypatch):
    alone = {"n2"}                                       # its gossip never started: only a restart helps
    fleet = FakeFleet(3, alone, lambda n: frozenset())

    async def reannounce_in_store(pool, inv, ips_, advertise):
        fleet.events.append(f"announce {advertise}")
        return f"the store announced {advertise} again"

    async def rejoin(docker, pool, inv, ips_, changes, out, inside):
        fleet.events.append(f"rejoin {' '.join(sorted(out))}")
        for n in out:
            changes[n].reason += f"; {out[n]}; restarted alone: rejoined the gossip"
        alone.clear()

    by = await fleet.apply(monkeypatch, 2, reannounce_in_store=reannounce_in_store, rejoin=rejoin)
    assert fleet.events == ["restart n3", "restart n1", "restart n2", "announce 198.18.1.3:2375", "rejoin n2"]
    reason = by["n2"].reason
    assert "after the store announced 198.18.1.3:2375 again; restarted alone: rejoined the gossip" in reason, reason


async def test_a_configured_node_out_of_the_gossip_is_planned_to_rejoin():
    from core.dockerd import store
    from core.model import ClusterSpec, Inventory, NodeSpec
    from core.nodes.address import UnderlayAddresses

    inv = Inventory(path="x.toml", nodes=(NodeSpec("n1", "198.18.9.1"), NodeSpec("n2", "198.18.9.2"),
                                          NodeSpec("n3", "198.18.9.3")), cluster=ClusterSpec(etcd_tls=False))

    class Engine:
        async def call(self, node, fn):
            ip = inv.node(node).address

            class Client:
                def version(self):
                    return {"Version": "20.10.24"}

                def info(self):
                    return {"ClusterStore": f"etcd://{ip}:2379", "ClusterAdvertise": f"{ip}:2375"}
            return fn(Client())

    class Shell(_Shell):
        async def run(self, node, command, **kw):
            from core.model import CommandResult
            ip = inv.node(node).address
            knows = "gossip=Join 198.18.9.3\n" if node == "n3" else "gossip=Join 198.18.9.1\ngossip=Join 198.18.9.2\n"
            out = (f"direct\npid=7\nalive=yes\narg=dockerd\ngossip-log\n{knows}--daemon.json--\n"
                   f'{{"cluster-store": "etcd://{ip}:2379", "cluster-advertise": "{ip}:2375"}}')
            return CommandResult(node, command, 0, out, "", 0.01)

    shell = Shell(inv, "")
    changes = {c.node: c for c in await store.plan(Engine(), shell, UnderlayAddresses(shell), inv)}
    assert changes["n1"].action == changes["n2"].action == "none"
    assert changes["n3"].action == "rejoin"
    assert changes["n3"].reason == "out of the overlay's gossip: n1, n2 do not know it (it knows 1 of 3 node(s))"
    assert "one at a time" in changes["n3"].command


class _Networks:
    """Stands in for DockerNodes for OverlayNetworks: one overlay network with a container on each node; the
    first inspect on ``flaky`` answers "not found" (as Docker 20.10's classic store has, for a network it
    had just listed)."""

    executor = None

    def __init__(self, flaky: str, gone: bool = False) -> None:
        self.flaky, self.gone, self.inspects = flaky, gone, {}

    async def call(self, node, fn, *args):
        import docker.errors
        fake = self

        class Api:
            def networks(self):
                return [{"Id": "n" * 64, "Name": "demo", "Driver": "overlay", "Scope": "global"}]

            def inspect_network(self, net_id):
                fake.inspects[node] = fake.inspects.get(node, 0) + 1
                if node == fake.flaky and (fake.gone or fake.inspects[node] == 1):
                    raise docker.errors.NotFound("network not found")
                return {"Id": net_id, "Name": "demo", "Driver": "overlay", "Scope": "global",
                        "Containers": {node * 8: {"Name": f"probe-{node}", "IPv4Address": "198.19.1.2/24"}}}

        class Client:
            api = Api()

            def info(self):
                return {"ClusterStore": ""}
        return fn(Client(), *args)


@pytest.mark.parametrize("gone", [False, True])
async def test_a_network_the_store_said_not_found_once_is_asked_again(gone):
    from core.dockerd.networks import OverlayNetworks
    from core.model import ClusterSpec, Inventory, NodeSpec

    inv = Inventory(path="x.toml", nodes=(NodeSpec("n1", "198.18.9.1"), NodeSpec("n2", "198.18.9.2")),
                    cluster=ClusterSpec())
    engine = _Networks("n2", gone=gone)
    [net] = (await OverlayNetworks(engine, None, inv).listing()).networks   # type: ignore[arg-type]
    if gone:        # still not found: removed between the list and the inspect, as far as n2 knows
        assert (net.nodes, [c.name for c in net.containers], engine.inspects["n2"]) == (["n1"], ["probe-n1"], 2)
    else:
        assert net.nodes == ["n1", "n2"] and [c.name for c in net.containers] == ["probe-n1", "probe-n2"]
    assert engine.inspects["n1"] == 1


class _SilentNode(_Networks):
    """n3's Docker refuses every call while ``down`` (fast), then hangs until ``back`` is set."""

    def __init__(self) -> None:
        super().__init__(flaky="")
        self.down, self.back = True, asyncio.Event()

    async def call(self, node, fn, *args):
        if node == "n3":
            if self.down:
                raise DockerError("n3: cannot reach the Docker daemon")
            await self.back.wait()
        return await super().call(node, fn, *args)


async def test_a_silent_node_costs_later_listings_its_patience_and_its_asking_goes_on(monkeypatch):
    """After a node's asking failed slowly (SILENT_PATIENCE 0 makes any failure slow), the next listing waits
    SILENT_PATIENCE for it (not NODE_BUDGET) and leaves its asking running; the listing after that takes the
    answer it brought, without asking again."""
    from core.dockerd import networks as mod
    from core.model import ClusterSpec, Inventory, NodeSpec

    monkeypatch.setattr(mod, "NODE_BUDGET", 60.0)
    monkeypatch.setattr(mod, "SILENT_PATIENCE", 0.0)
    inv = Inventory(path="x.toml", nodes=tuple(NodeSpec(f"n{i}", f"198.18.9.{i}") for i in (1, 2, 3)),
                    cluster=ClusterSpec())
    engine = _SilentNode()
    nets = mod.OverlayNetworks(engine, None, inv)   # type: ignore[arg-type]
    asks: list[str] = []
    node = nets._node

    async def counted(name: str):
        asks.append(name)
        return await node(name)
    monkeypatch.setattr(nets, "_node", counted)
    first = await nets.listing()
    assert "cannot reach" in first.problems["n3"] and first.networks[0].nodes == ["n1", "n2"]
    assert nets.askings.silent == {"n3"}
    engine.down = False
    second = await nets.listing()              # n3 hangs: not waited for beyond its patience (60 s budget)
    assert "has not listed its networks yet" in second.problems["n3"] and second.networks[0].nodes == ["n1", "n2"]
    monkeypatch.setattr(mod, "SILENT_PATIENCE", 30.0)
    engine.back.set()
    third = await nets.listing()
    assert third.problems == {} and third.networks[0].nodes == ["n1", "n2", "n3"]
    assert asks.count("n3") == 2               # the asking of the second listing brought the third its answer
    assert nets.askings.silent == set() and nets.askings.flight == {}


async def test_a_node_whose_docker_refused_at_once_is_waited_for_in_full_next_time(monkeypatch):
    """A quick failure (Docker down: refused) is not silence: the next listing gives the node its whole budget
    (a daemon just started again may be slow to answer its first listing)."""
    from core.dockerd import networks as mod
    from core.model import ClusterSpec, Inventory, NodeSpec

    monkeypatch.setattr(mod, "SILENT_PATIENCE", 60.0)
    inv = Inventory(path="x.toml", nodes=(NodeSpec("n1", "198.18.9.1"), NodeSpec("n3", "198.18.9.3")),
                    cluster=ClusterSpec())
    nets = mod.OverlayNetworks(_SilentNode(), None, inv)   # type: ignore[arg-type]
    assert "cannot reach" in (await nets.listing()).problems["n3"]
    assert nets.askings.silent == set()


async def test_closing_stops_the_listings_in_flight(monkeypatch):
    from core.dockerd import networks as mod
    from core.model import ClusterSpec, Inventory, NodeSpec

    monkeypatch.setattr(mod, "SILENT_PATIENCE", 0.0)
    inv = Inventory(path="x.toml", nodes=(NodeSpec("n1", "198.18.9.1"), NodeSpec("n3", "198.18.9.3")),
                    cluster=ClusterSpec())
    engine = _SilentNode()
    nets = mod.OverlayNetworks(engine, None, inv)   # type: ignore[arg-type]
    await nets.listing()
    engine.down = False
    await nets.listing()                        # n3's asking hangs, left running
    [asking] = nets.askings.flight.values()
    await nets.close()
    assert asking.cancelled() and nets.askings.flight == {}


class _Changing(_Networks):
    """The network's ID as of the moment the list was asked (``net_id``); n1 hangs until ``back`` is set."""

    def __init__(self) -> None:
        super().__init__(flaky="")
        self.net_id, self.back = "a" * 64, asyncio.Event()

    async def call(self, node, fn, *args):
        net_id = self.net_id
        if node == "n1":
            await self.back.wait()
        answer = await super().call(node, fn, *args)
        if isinstance(answer, list):                   # the list: inspects then follow the ID it gave
            answer = [{**n, "Id": net_id} for n in answer]
        return answer


async def test_an_asking_left_by_a_listing_given_up_on_never_answers_a_later_listing():
    """A listing cancelled while a (not silent) node was slow leaves that node's asking to end by itself; its
    answer predates whatever changed since, so the next listing asks again."""
    from core.dockerd.networks import OverlayNetworks
    from core.model import ClusterSpec, Inventory, NodeSpec

    inv = Inventory(path="x.toml", nodes=(NodeSpec("n1", "198.18.9.1"),), cluster=ClusterSpec())
    engine = _Changing()
    nets = OverlayNetworks(engine, None, inv)   # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(nets.listing(), 0.1)       # the caller gives up (a names refresh's timeout)
    left = nets.askings.flight["n1"]
    engine.net_id = "b" * 64                               # the network was made again meanwhile
    engine.back.set()
    assert [n["Id"] for n in (await left)[1]] == ["a" * 64]   # what that asking brought: from before the change
    assert [n.id for n in (await nets.listing()).networks] == ["b" * 64]


@pytest.mark.parametrize("address, outcome", [("198.19.1.2", "kept"), ("", "started")])
async def test_a_running_probe_without_an_address_on_its_network_is_started_again(address, outcome):
    """A probe that runs with `demo` in its networks but no address there (seen in CI: the ping matrix then
    says "probe on docker-node1 has no address on demo" on every apply) is replaced, not kept."""
    from core.dockerd.probes import LABEL, STOP_SIGNAL, Probes

    calls: list[str] = []

    class Engine:
        async def call(self, node, fn, *args):
            class Api:
                def inspect_container(self, name):
                    return {"State": {"Running": True}, "Config": {"Image": probes.image, "StopSignal": STOP_SIGNAL},
                            "NetworkSettings": {"Networks": {"demo": {"IPAddress": address}}}}

                def remove_container(self, name, force=False):
                    calls.append(f"rm {name}")

            class Containers:
                def run(self, image, cmd, **kw):
                    calls.append(f"run {kw['name']} on {kw['network']} ({kw['labels'][LABEL]})")

            class Client:
                api, containers = Api(), Containers()
            return fn(Client(), *args)

    probes = Probes(Engine(), _inv())   # type: ignore[arg-type]

    async def no_image(node):
        return False
    probes.ensure_image = no_image       # type: ignore[method-assign]
    assert await probes.start_one("n1", "demo") == outcome
    assert calls == ([] if outcome == "kept" else ["rm probe-n1", "run probe-n1 on demo (demo)"])
