"""Offline tests of the etcd planning and decision logic (no lab needed)."""
from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from core.errors import EtcdError
from core.etcd.decide import SEP, Inspection, decide, inspect_script, parse_inspection, version_problem
from core.etcd.health import assemble_cluster
from core.etcd.plan import flag_differences, marker_matches, member_data_dir, parse_flags, plan_cluster
from core.etcd.read import Endpoint, Probe, _flatten_v2, hex_id, pretty_value
from core.etcd.watch import diff_keys, diff_members
from core.model import ClusterSpec, EtcdMember, Inventory, KeyEntry, NodeSpec

IPS = {"docker-node1": "198.18.0.1", "docker-node2": "198.18.0.2"}


def inventory(**cluster) -> Inventory:
    nodes = tuple(NodeSpec(name, ip) for name, ip in IPS.items())
    return Inventory(path="inv.toml", nodes=nodes, cluster=ClusterSpec(**cluster))


def test_plan_without_tls_is_the_tutorials_command_line():
    plans = plan_cluster(inventory(etcd_tls=False), IPS)
    assert [p.node for p in plans] == ["docker-node1", "docker-node2"]
    assert plans[0].command == (
        "etcd --name docker-node1"
        " --initial-advertise-peer-urls http://198.18.0.1:2380 --listen-peer-urls http://198.18.0.1:2380"
        " --listen-client-urls http://198.18.0.1:2379,http://127.0.0.1:2379"
        " --advertise-client-urls http://198.18.0.1:2379 --initial-cluster-token etcd-cluster-01"
        " --initial-cluster docker-node1=http://198.18.0.1:2380,docker-node2=http://198.18.0.2:2380"
        " --initial-cluster-state new --data-dir /var/lib/etcd/docker-node1.etcd --enable-v2=true")
    assert plans[1].client_url == "http://198.18.0.2:2379"
    assert plans[1].marker_path == "/var/lib/etcd/docker-node2.etcd/overlay-tui.json"
    assert not plans[0].tls


def test_plan_with_tls_by_default_has_https_urls_certificates_and_client_cert_auth():
    plans = plan_cluster(inventory(), IPS)
    flags = parse_flags(plans[0].argv)
    assert plans[0].tls and plans[0].client_url == "https://198.18.0.1:2379"
    assert flags["--listen-client-urls"] == "https://198.18.0.1:2379,https://127.0.0.1:2379"
    assert flags["--listen-peer-urls"] == flags["--initial-advertise-peer-urls"] == "https://198.18.0.1:2380"
    assert flags["--initial-cluster"] == "docker-node1=https://198.18.0.1:2380,docker-node2=https://198.18.0.2:2380"
    assert (flags["--cert-file"], flags["--key-file"]) == ("/etc/etcd/pki/server.crt", "/etc/etcd/pki/server.key")
    assert (flags["--peer-cert-file"], flags["--peer-key-file"]) == ("/etc/etcd/pki/peer.crt", "/etc/etcd/pki/peer.key")
    assert flags["--trusted-ca-file"] == flags["--peer-trusted-ca-file"] == "/etc/etcd/pki/ca.crt"
    assert flags["--client-cert-auth"] == flags["--peer-client-cert-auth"] == flags["--enable-v2"] == "true"


def test_plan_uses_the_inventory_cluster_settings_and_quotes():
    plans = plan_cluster(inventory(etcd_token="my token", etcd_client_port=12379, etcd_peer_port=12380,
                                   etcd_data_dir="/srv/etcd/"), IPS)
    argv = shlex.split(plans[1].command)
    assert argv == list(plans[1].argv)
    flags = parse_flags(argv)
    assert flags["--initial-cluster-token"] == "my token"
    assert flags["--listen-client-urls"] == "https://198.18.0.2:12379,https://127.0.0.1:12379"
    assert flags["--listen-peer-urls"] == "https://198.18.0.2:12380"
    assert flags["--data-dir"] == "/srv/etcd/docker-node2.etcd"
    assert flags["--enable-v2"] == "true"


def test_plan_brackets_ipv6_and_needs_every_ip():
    plans = plan_cluster(inventory(), {"docker-node1": "fd00::1", "docker-node2": "fd00::2"})
    assert plans[0].client_url == "https://[fd00::1]:2379"
    with pytest.raises(EtcdError, match="docker-node2"):
        plan_cluster(inventory(), {"docker-node1": "198.18.0.1"})
    with pytest.raises(EtcdError, match="absolute"):
        member_data_dir("relative/dir", "n1")


def test_flags_compare_across_spellings():
    plan = plan_cluster(inventory(), IPS)[0]
    running = ["/usr/bin/etcd"] + [a.replace("--enable-v2=true", "--enable-v2") for a in plan.argv[1:]]
    assert flag_differences(running, plan) == []
    running = list(plan.argv)
    running[running.index("--initial-cluster-token") + 1] = "other"
    diffs = flag_differences(running, plan)
    assert diffs == ["--initial-cluster-token: running 'other', planned 'etcd-cluster-01'"]


def test_marker_matches_only_this_cluster():
    plan = plan_cluster(inventory(), IPS)[0]
    assert marker_matches(json.dumps(plan.marker()), plan)[0]
    ok, what = marker_matches(json.dumps({**plan.marker(), "token": "t2"}), plan)
    assert not ok and "token 't2'" in what
    assert marker_matches(None, plan) == (False, "no overlay-tui marker")
    assert not marker_matches("not json", plan)[0]


def _found(**kw) -> Inspection:
    return Inspection(version="3.4.23", **kw)


def test_decide_adopts_a_member_running_with_the_plan():
    plan = plan_cluster(inventory(), IPS)[0]
    act = decide(plan, _found(processes=[(42, list(plan.argv))], has_member=True,
                              marker=json.dumps(plan.marker())))
    assert (act.kind, act.pid, act.write_marker) == ("adopt", 42, False)


def test_decide_refuses_an_etcd_running_with_other_flags_unless_forced():
    plan = plan_cluster(inventory(), IPS)[0]
    other = ["etcd", "--name", "x", "--data-dir", "/tmp/x"]
    act = decide(plan, _found(processes=[(7, other)]))
    assert act.kind == "refuse"
    assert "docker-node1: an etcd (pid 7) already runs there with other flags" in act.reason
    assert "--force" in act.reason
    forced = decide(plan, _found(processes=[(7, other)]), force=True)
    assert (forced.kind, forced.stop_pids) == ("start", [7])


def test_decide_refuses_a_foreign_data_dir_and_force_wipes_it():
    plan = plan_cluster(inventory(), IPS)[0]
    act = decide(plan, _found(data_dir_exists=True, has_member=True))
    assert act.kind == "refuse"
    assert f"data dir {plan.data_dir} holds an etcd member with no overlay-tui marker" in act.reason
    act = decide(plan, _found(has_member=True, marker=json.dumps({**plan.marker(), "token": "old"})))
    assert act.kind == "refuse" and "token 'old'" in act.reason
    forced = decide(plan, _found(has_member=True), force=True)
    assert (forced.kind, forced.wipe, forced.write_marker) == ("start", True, True)


def test_decide_restarts_own_member_and_starts_fresh():
    plan = plan_cluster(inventory(), IPS)[0]
    own = decide(plan, _found(has_member=True, marker=json.dumps(plan.marker())))
    assert (own.kind, own.wipe, own.write_marker) == ("start", False, False)
    fresh = decide(plan, _found())
    assert (fresh.kind, fresh.wipe, fresh.write_marker) == ("start", False, True)


def test_decide_refuses_missing_or_v2less_etcd():
    plan = plan_cluster(inventory(), IPS)[0]
    assert "not installed" in decide(plan, Inspection()).reason
    assert version_problem("3.6.1") and "v2" in version_problem("3.6.1")
    assert version_problem("3.5.9") is None


def test_parse_inspection_reads_the_script_output():
    plan = plan_cluster(inventory(), IPS)[0]
    text = (f"pid=12\nargv={SEP.join(plan.argv)}{SEP}\nversion=3.4.23\ndatadir=yes\nmember=yes\n"
            "marker=eyJhIjogMX0=\n")
    found = parse_inspection(text)
    assert found.processes == [(12, list(plan.argv))]
    assert (found.version, found.data_dir_exists, found.has_member, found.marker) == ("3.4.23", True, True, '{"a": 1}')


def test_inspect_script_runs_in_a_real_shell(tmp_path):
    plan = plan_cluster(inventory(etcd_data_dir=str(tmp_path)), IPS)[0]
    (tmp_path / "docker-node1.etcd" / "member").mkdir(parents=True)
    (tmp_path / "docker-node1.etcd" / "overlay-tui.json").write_text(json.dumps(plan.marker()))
    out = subprocess.run(["sh", "-c", inspect_script(plan)], capture_output=True, text=True, check=True).stdout
    found = parse_inspection(out)
    assert found.has_member and found.data_dir_exists
    assert marker_matches(found.marker, plan)[0]
    assert decide(plan, Inspection(version=found.version or "3.4.23", has_member=True,
                                   marker=found.marker)).kind == "start"


def _probe(ip: str, mid: int, healthy=True, leader=1, members=None, error=None) -> Probe:
    ep = Endpoint(via=f"n{ip[-1]}", host=ip, port=2379)
    return Probe(ep, members=members, member_id=mid if error is None or healthy else None, leader_id=leader,
                 version="3.4.23", healthy=healthy, latency_ms=1.0, error=error)


MEMBERS = [EtcdMember(id=hex_id(1), name="n1", peer_urls=["http://10.0.0.1:2380"], client_urls=["http://10.0.0.1:2379"]),
           EtcdMember(id=hex_id(2), name="n2", peer_urls=["http://10.0.0.2:2380"], client_urls=["http://10.0.0.2:2379"])]


def test_cluster_health_lines_like_etcdctl():
    probes = [_probe("10.0.0.1", 1, members=MEMBERS), _probe("10.0.0.2", 2, members=MEMBERS)]
    c = assemble_cluster(probes, [p.endpoint for p in probes])
    assert c.healthy and [m.leader for m in c.members] == [True, False]
    assert c.summary == ["member 1 is healthy: got healthy result from http://10.0.0.1:2379",
                         "member 2 is healthy: got healthy result from http://10.0.0.2:2379", "cluster is healthy"]


def test_a_stopped_member_is_unhealthy_and_the_cluster_degraded():
    down = Probe(Endpoint("n2", "10.0.0.2", 2379), error="no answer from http://10.0.0.2:2379")
    probes = [_probe("10.0.0.1", 1, members=MEMBERS), down]
    c = assemble_cluster(probes, [p.endpoint for p in probes])
    assert not c.healthy
    n2 = c.members[1]
    assert (n2.name, n2.healthy, n2.error) == ("n2", False, "no answer from http://10.0.0.2:2379")
    assert c.summary[1:] == ["member 2 is unreachable: [http://10.0.0.2:2379] are all unreachable", "cluster is degraded"]


def test_no_member_answering_lists_the_inventory_endpoints():
    eps = [Endpoint("n1", "10.0.0.1", 2379), Endpoint("n2", "10.0.0.2", 2379)]
    c = assemble_cluster([Probe(eps[0], error="refused"), Probe(eps[1], error="refused")], eps)
    assert not c.healthy and [m.name for m in c.members] == ["n1", "n2"]
    assert c.summary[-1] == "cluster is unavailable" and "n1: refused" in c.error


def test_an_endpoint_of_another_cluster_is_reported():
    probes = [_probe("10.0.0.1", 1, members=MEMBERS), _probe("10.0.0.2", 2, members=MEMBERS),
              _probe("10.0.0.3", 99, members=[], leader=99)]
    c = assemble_cluster(probes, [p.endpoint for p in probes])
    assert not c.healthy and "answers as member 63, which is not in the cluster's member list" in c.error


def test_watch_diffs():
    c1 = assemble_cluster([_probe("10.0.0.1", 1, members=MEMBERS)], [])
    seen, events = diff_members({}, c1)
    assert sorted((e.action, e.key) for e in events) == [("added", "n1"), ("added", "n2")]
    c2 = assemble_cluster([_probe("10.0.0.1", 1, members=MEMBERS[:1])], [])
    seen, events = diff_members(seen, c2)
    assert [(e.action, e.key) for e in events] == [("removed", "n2")]
    keys, events = diff_keys({"/a": "1", "/b": "2"}, [KeyEntry("/a", "1"), KeyEntry("/b", "3"), KeyEntry("/c", "4")], "v2")
    assert sorted((e.action, e.key, e.source) for e in events) == [("put", "/b", "v2"), ("put", "/c", "v2")]
    _, events = diff_keys(keys, [], "v2")
    assert sorted(e.action for e in events) == ["delete", "delete", "delete"]


def test_v2_tree_is_flattened_with_json_pretty():
    tree = {"key": "/docker", "dir": True, "nodes": [
        {"key": "/docker/nodes", "dir": True, "nodes": [{"key": "/docker/nodes/198.18.0.1:2375", "value": "198.18.0.1:2375"}]},
        {"key": "/docker/network/v1.0/idm/vxlan-id", "value": '{"Bits": 1}'}]}
    out: list[KeyEntry] = []
    _flatten_v2(tree, out)
    assert [(e.key, e.is_dir) for e in out] == [("/docker", True), ("/docker/nodes", True),
                                                ("/docker/nodes/198.18.0.1:2375", False),
                                                ("/docker/network/v1.0/idm/vxlan-id", False)]
    assert out[-1].value == '{\n  "Bits": 1\n}' and out[-1].source == "v2"
    assert pretty_value(b"plain") == "plain" and pretty_value(None) is None


def test_a_systemd_etcd_is_named_and_stopped_through_systemctl():
    plan = plan_cluster(inventory(), IPS)[0]
    found = parse_inspection(f"pid=9\nunit=etcd.service\nargv=/usr/bin/etcd{SEP}\nversion=3.4.23\n")
    assert found.units == {9: "etcd.service"}
    act = decide(plan, found)
    assert act.kind == "refuse" and "`systemctl disable --now etcd.service` on the node" in act.reason
    forced = decide(plan, found, force=True)
    assert (forced.kind, forced.stop_units, forced.stop_pids) == ("start", ["etcd.service"], [])
