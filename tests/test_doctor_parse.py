"""The doctor's judgements on recorded command output, including faults the lab cannot plant
(clock skew, vmxnet3 offload, ESP, full disks, quotas, versions), and the report's JSON and text."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from core.cli.doctor import report_json, report_lines
from core.doctor import parse
from core.doctor.checks import CHECKS, DoctorContext, check_esp, check_vmxnet3
from core.doctor.facts import NodeFacts
from core.model import DoctorCheck, DoctorReport, Inventory, NodeSpec
from core.recorded.service import RecordedService

FIXTURE = Path(__file__).parent / "fixtures" / "lab_state.json"


def test_sections_split_the_facts_script_output():
    text = "@@hostname\ndocker-node1\n@@etcd\netcd\n--name\nn1\n@@empty\n@@end\n"
    assert parse.sections(text) == {"hostname": ["docker-node1"], "etcd": ["etcd", "--name", "n1"], "empty": [],
                                    "end": []}


def test_docker_versions_classic_store_needs_20_10_or_older():
    assert parse.docker_verdict("20.10.24")[0] == "ok"
    assert parse.docker_verdict("19.03.15")[0] == "ok"
    status, summary, fix = parse.docker_verdict("24.0.7")
    assert status == "fail" and "swarm" in summary and "23.0" in summary and "docker swarm init" in fix
    assert parse.docker_verdict(None)[0] == "warn"


def test_etcd_flags_from_cmdline_and_environment():
    argv = ["--name", "n1", "--enable-v2=true", "--listen-client-urls", "http://198.18.0.1:2379,http://127.0.0.1:2379",
            "--debug"]
    flags = parse.etcd_flags(argv, ["ETCD_QUOTA_BACKEND_BYTES=1048576", "ETCD_ENABLE_V2=false", "PATH=/bin"])
    assert flags["enable-v2"] == "true"                  # the command line wins over the environment
    assert flags["quota-backend-bytes"] == "1048576" and flags["debug"] == "true" and "path" not in flags
    assert flags["listen-client-urls"].startswith("http://198.18.0.1")


def test_etcd_v2_verdicts():
    assert parse.etcd_v2_verdict("3.4.23", {"enable-v2": "true"})[0] == "ok"
    status, summary, fix = parse.etcd_v2_verdict("3.4.23", {})
    assert status == "fail" and "--enable-v2=true" in fix
    assert parse.etcd_v2_verdict("3.3.25", {})[0] == "ok"     # v2 was on by default before 3.4
    status, summary, _ = parse.etcd_v2_verdict("3.6.0", {"enable-v2": "true"})
    assert status == "fail" and "removed in 3.6" in summary
    assert parse.etcd_version("etcd Version: 3.4.23\nGit SHA: x") == "3.4.23"


def test_python_versions():
    good = {"etcd3": "0.12.0", "protobuf": "3.20.3", "docker": "7.1.0", "asyncssh": "2.24.0", "textual": "8.2.0"}
    assert parse.python_verdict(good, False)[0] == "ok"
    status, problems, fix = parse.python_verdict({**good, "protobuf": "4.25.1"}, False)
    assert status == "fail" and "Descriptors" in problems[0] and "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" in fix
    assert parse.python_verdict({**good, "protobuf": "4.25.1"}, True)[0] == "ok"
    status, problems, _ = parse.python_verdict({**good, "asyncssh": None}, False)
    assert status == "fail" and problems == ["asyncssh is not installed"]


def test_duplicate_hostnames():
    assert parse.duplicate_hostnames({"a": "h1", "b": "h2", "c": "h1"}) == {"h1": ["a", "c"]}
    assert parse.duplicate_hostnames({"a": "h1", "b": "h2"}) == {}


LINKS = ["1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000",
         "2: eth0@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc noqueue state UP mode DEFAULT group default",
         "9: docker_gwbridge: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT"]
ADDRS = ["1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
         "2: eth0    inet 198.18.1.2/24 scope global eth0\\       valid_lft forever preferred_lft forever"]


def test_mtu_of_the_underlay_interface():
    assert parse.interface_of(ADDRS, "198.18.1.2") == "eth0"
    assert parse.interface_of(ADDRS, "198.18.1.9") is None
    assert parse.link_mtu(LINKS, "eth0") == 1400
    status, summary, fix = parse.mtu_verdict(1400, "eth0")
    assert status == "fail" and "mtu=1350" in fix and "ip link set dev eth0 mtu 1500" in fix
    assert parse.mtu_verdict(1500, "eth0")[0] == "ok" and parse.mtu_verdict(9000, "eth0")[0] == "ok"


def test_path_mtu_script_and_its_output():
    script = parse.pmtu_script("198.18.1.1", ["198.18.1.2"])
    assert "-M do" in script and "-I 198.18.1.1" in script and "1472" in script
    assert parse.parse_pmtu("198.18.1.2 1372\n198.18.1.3 1472\n198.18.1.4 none\n198.18.1.5 down\n") == {
        "198.18.1.2": 1372, "198.18.1.3": 1472, "198.18.1.4": None, "198.18.1.5": "down"}


def test_kernel_modules():
    assert parse.modules(["vxlan loaded", "esp4 missing", "xfrm_user available", "junk"]) == {
        "vxlan": "loaded", "esp4": "missing", "xfrm_user": "available"}


def test_clock_skew_round_trip_corrected():
    off, unc = parse.clock_offset(100.0, "101.5\n", 100.2)
    assert round(off, 3) == 1.4 and round(unc, 3) == 0.1
    offsets = {"n1": (0.001, 0.005), "n2": (2.5, 0.005), "n3": (0.0, 0.005)}
    status, spread, nodes = parse.skew_verdict(offsets)
    assert status == "fail" and nodes == ["n3", "n2"] and round(spread, 1) == 2.5
    assert parse.skew_verdict({"n1": (0.0, 0.01), "n2": (0.7, 0.01)})[0] == "warn"
    assert parse.skew_verdict({"n1": (0.0, 0.01), "n2": (0.02, 0.01)})[0] == "ok"
    # a slow round trip is uncertainty, not skew
    assert parse.skew_verdict({"n1": (0.0, 0.4), "n2": (0.9, 0.4)})[0] == "ok"


def test_member_counts():
    assert parse.member_count_verdict(2)[0] == "warn" and "no fault tolerance" in parse.member_count_verdict(2)[1]
    assert parse.member_count_verdict(4)[0] == "warn" and "even" in parse.member_count_verdict(4)[1]
    assert parse.member_count_verdict(9)[0] == "warn" and "more than 7" in parse.member_count_verdict(9)[1]
    assert parse.member_count_verdict(3)[0] == "ok" and parse.member_count_verdict(5)[0] == "ok"
    assert parse.member_count_verdict(0)[0] == "fail"


def test_db_size_against_the_quota():
    assert parse.quota_verdict(20 * 1024 ** 2, parse.DEFAULT_QUOTA)[0] == "ok"
    assert parse.quota_verdict(1900 * 1024 ** 2, parse.DEFAULT_QUOTA)[0] == "warn"
    status, text = parse.quota_verdict(1000, 1024)
    assert status == "fail" and "NOSPACE" in text
    assert parse.parse_size("1048576") == 1048576 and parse.parse_size(None) is None


def test_metrics_text():
    text = ("# HELP etcd_server_leader_changes_seen_total x\netcd_server_leader_changes_seen_total 7\n"
            "etcd_server_has_leader 1\n")
    assert parse.metric(text, "etcd_server_leader_changes_seen_total") == 7.0
    assert parse.metric(text, "etcd_server_has_leader") == 1.0
    assert parse.metric(text, "nope") is None


def test_a_full_disk_under_the_data_dir():
    full = ("Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
            "/dev/sdb1          1031168   1031100        68     100% /var/lib/etcd\n")
    use = parse.parse_df(full)
    assert use is not None and (use.used_pct, use.mount) == (100, "/var/lib/etcd")
    assert parse.disk_verdict(use) == "fail"
    roomy = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 264212084 23783948 82606964 23% /\n"
    use = parse.parse_df(roomy)
    assert use is not None and parse.disk_verdict(use) == "ok"
    assert parse.parse_df("df: /nope: No such file or directory\n") is None


def test_last_fatal_line_of_an_etcd_log():
    lines = ["2026-11-30 03:09:11.148703 I | etcdmain: etcd Version: 3.4.23",
             "2026-11-30 03:10:00.000001 C | etcdserver: open wal: write /var/lib/etcd/x: no space left on device",
             "2026-11-30 03:10:00.000002 I | etcdmain: exiting"]
    assert "no space left on device" in (parse.last_fatal(lines) or "")
    zap = ['{"level":"info","msg":"x"}', '{"level":"fatal","msg":"failed to open database","error":"disk full"}']
    assert "disk full" in (parse.last_fatal(zap) or "")
    assert parse.last_fatal(lines[:1]) is None


def test_plaintext_store_and_docker_tcp():
    assert parse.plaintext_urls("http://198.18.0.1:2379,http://127.0.0.1:2379") == ["http://198.18.0.1:2379"]
    assert parse.plaintext_urls("https://198.18.0.1:2379,http://localhost:2379") == []
    assert parse.plaintext_urls("http://[::1]:2379") == []
    ss = ["LISTEN 0 4096 127.0.0.1:2379 0.0.0.0:*", "LISTEN 0 4096 *:2375 *:*",
          "LISTEN 0 4096 198.18.0.1:2376 0.0.0.0:*", "LISTEN 0 4096 127.0.0.1:2375 0.0.0.0:*"]
    assert parse.tcp_listeners(ss, (2375, 2376)) == ["*:2375", "198.18.0.1:2376"]
    assert parse.docker_tls(["dockerd", "--tlsverify", "-H", "tcp://0.0.0.0:2376"])
    assert not parse.docker_tls(["dockerd", "-H", "tcp://0.0.0.0:2375"])


def test_forward_drop_policy_and_bridges():
    rules = ["-P FORWARD DROP", "-A FORWARD -o docker_gwbridge -j DOCKER",
             "-A FORWARD -i docker_gwbridge ! -o docker_gwbridge -j ACCEPT"]
    brs = parse.bridges(["9: docker_gwbridge: <UP> mtu 1500", "12: br-doctor: <UP> mtu 1500"])
    assert brs == ["docker_gwbridge", "br-doctor"]
    assert parse.forward_blocked_bridges(rules, brs) == ("DROP", ["br-doctor"])
    assert parse.forward_blocked_bridges(["-P FORWARD ACCEPT"], brs) == ("ACCEPT", [])


ETHTOOL_K = """Features for ens192:
rx-checksumming: on
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
\ttx-checksum-ip-generic: on
tx-udp_tnl-segmentation: on
tx-udp_tnl-csum-segmentation: off [fixed]
"""


def test_vmxnet3_offload():
    assert parse.offload_on(ETHTOOL_K) == ["tx-checksumming", "tx-checksum-ip-generic", "tx-udp_tnl-segmentation"]


def _ctx(facts: dict[str, NodeFacts], docker=None) -> DoctorContext:
    inv = Inventory("x", tuple(NodeSpec(n, f.ip) for n, f in facts.items()))
    ctx = DoctorContext(inv, None, docker, None, None, list(facts))

    async def get(node: str) -> NodeFacts:
        return facts[node]
    ctx.facts = get        # type: ignore[method-assign]  # recorded facts instead of SSH
    return ctx


def test_vmxnet3_check_names_the_node():
    facts = {"n1": NodeFacts("n1", "10.0.0.1", {"iface": ["ens192"], "driver": ["vmxnet3"],
                                                "offload": ETHTOOL_K.splitlines()}),
             "n2": NodeFacts("n2", "10.0.0.2", {"iface": ["eth0"], "driver": ["../../bus/virtio/drivers/virtio_net"]})}
    [row] = asyncio.run(check_vmxnet3(_ctx(facts)))
    assert (row.status, row.nodes) == ("warn", ["n1"]) and "tx-checksum-ip-generic off" in row.fix
    assert any("virtio_net" in e for e in row.evidence)


class _Docker:
    async def call(self, node, fn):
        return [{"Name": "secret", "Options": {"encrypted": ""}}, {"Name": "demo", "Options": {}}]


def test_esp_missing_while_an_encrypted_overlay_exists():
    facts = {"n1": NodeFacts("n1", "10.0.0.1", {"modules": ["vxlan loaded", "esp4 missing", "xfrm_user loaded"]}),
             "n2": NodeFacts("n2", "10.0.0.2", {"modules": ["vxlan loaded", "esp4 loaded", "xfrm_user loaded"]})}
    [row] = asyncio.run(check_esp(_ctx(facts, _Docker())))
    assert (row.status, row.nodes) == ("fail", ["n1"]) and "secret" in row.summary and "modprobe esp4" in row.fix


def test_serf_events_from_the_dockerd_log():
    lines = [
        'time="2026-11-30T03:09:14.134684803Z" level=info msg="2026/11/30 03:09:14 [INFO] serf: EventMemberJoin: '
        'docker-node2 198.18.1.2\\n"',
        'time="2026-11-30T03:19:14.000000001Z" level=info msg="2026/11/30 03:19:14 [INFO] serf: EventMemberFailed: '
        'docker-node3 198.18.1.3\\n"']
    peers = parse.serf_peers(lines)
    assert peers["198.18.1.2"].event == "EventMemberJoin" and peers["198.18.1.2"].name == "docker-node2"
    assert peers["198.18.1.3"].event == "EventMemberFailed" and peers["198.18.1.3"].at.minute == 19


def test_nft_counters():
    text = ('table inet t {\n chain input {\n  ip saddr 198.18.1.1 udp sport 5 udp dport 4789 counter packets 3 '
            'bytes 126 drop comment "docker-node1 udp/4789"\n  ip saddr 198.18.1.1 tcp sport 7 tcp dport 7946 '
            'counter packets 0 bytes 0 drop comment "docker-node1 tcp/7946"\n }\n}\n')
    assert parse.nft_counters(text) == {"docker-node1 udp/4789": 3, "docker-node1 tcp/7946": 0}


def test_registry_ids_are_unique():
    ids = [i for ids, _ in CHECKS for i in ids]
    assert len(ids) == len(set(ids)) and len(ids) >= 20


def test_report_json_and_text():
    report = DoctorReport([DoctorCheck("hostnames", "fail", ["a", "b"], "dup", ["a: hostname -> x\x1b[31m"], "rename"),
                           DoctorCheck("ssh", "ok", [], "fine", ["x"], "")], 1.25)
    data = report_json(report)
    assert data == {"ok": False, "checks": [
        {"id": "hostnames", "status": "fail", "nodes": ["a", "b"], "summary": "dup",
         "evidence": ["a: hostname -> x\x1b[31m"], "fix": "rename"},
        {"id": "ssh", "status": "ok", "nodes": [], "summary": "fine", "evidence": ["x"], "fix": ""}]}
    lines = report_lines(report)
    assert lines[0].startswith("FAIL hostnames") and "[a, b]" in lines[0]
    assert "\x1b" not in "\n".join(lines) and any(ln.strip().startswith("fix:  rename") for ln in lines)
    assert lines[-2].startswith("ok   ssh")          # ok rows show no evidence
    json.dumps(data)


def test_recorded_service_serves_the_recorded_doctor():
    svc = RecordedService.load(FIXTURE)
    report = asyncio.run(svc.doctor())
    assert report.checks and {c.id for c in report.checks} >= {"ssh", "hostnames", "ports.udp4789", "mtu.path"}
    only = asyncio.run(svc.doctor(checks=["hostnames"]))
    assert [c.id for c in only.checks] == ["hostnames"]
    state = json.loads(FIXTURE.read_text())
    state.pop("doctor")
    none = asyncio.run(RecordedService(state).doctor())
    assert none.checks[0].status == "warn" and "no doctor report was recorded" in none.checks[0].summary


def _etcd_facts(node: str, ip: str, *flags: str) -> NodeFacts:
    return NodeFacts(node, ip, {"etcd": ["etcd", *flags]})


def test_the_store_open_to_the_underlay_is_read_from_the_running_flags():
    from core.doctor.checks import check_etcd_plaintext

    plain = {"n1": _etcd_facts("n1", "10.0.0.1", "--listen-client-urls", "http://10.0.0.1:2379,http://127.0.0.1:2379"),
             "n2": NodeFacts("n2", "10.0.0.2", {"etcd": []})}          # no member on n2: not judged
    [row] = asyncio.run(check_etcd_plaintext(_ctx(plain)))
    assert (row.status, row.nodes) == ("warn", ["n1"]) and "TLS" in row.fix
    tls_anon = {"n1": _etcd_facts("n1", "10.0.0.1", "--listen-client-urls=https://10.0.0.1:2379",
                                  "--listen-peer-urls=https://10.0.0.1:2380")}
    [row] = asyncio.run(check_etcd_plaintext(_ctx(tls_anon)))
    assert row.status == "warn" and "no client certificate" in row.summary
    tls = {"n1": _etcd_facts("n1", "10.0.0.1", "--listen-client-urls=https://10.0.0.1:2379",
                             "--listen-peer-urls=https://10.0.0.1:2380", "--client-cert-auth")}
    [row] = asyncio.run(check_etcd_plaintext(_ctx(tls)))
    assert row.status == "ok"


def test_a_gossip_peer_that_failed_is_named():
    from core.doctor.checks import check_gossip

    failed = ('time="2026-11-30T03:19:14.000000001Z" level=info msg="serf: EventMemberFailed: n2 10.0.0.2\\n"')
    facts = {"n1": NodeFacts("n1", "10.0.0.1", {"serf": [failed]}),
             "n2": NodeFacts("n2", "10.0.0.2", {"serf": []})}
    ctx = _ctx(facts)

    async def ips() -> dict[str, str]:
        return {"n1": "10.0.0.1", "n2": "10.0.0.2"}
    ctx.ips = ips          # type: ignore[method-assign]
    [row] = asyncio.run(check_gossip(ctx))
    assert (row.status, row.nodes) == ("fail", ["n1", "n2"]) and "n1 sees n2 failed" in row.summary


class _FakePool:
    """Answers the port test's three commands as nodes would: n2 counted what n1 sent, except 4789, which
    n1 could not send (its source port was taken)."""

    def __init__(self) -> None:
        self.tables: dict[str, str] = {}

    async def run(self, node, command, *, input=None, timeout=None, check=False):
        from core.model import CommandResult

        if command.startswith("nft -f -"):
            self.tables[node] = input or ""
            return CommandResult(node, command, 0, "installed\n", "", 0.0)
        if command.startswith("python3 -c"):
            return CommandResult(node, command, 0, "error udp 10.0.0.2 4789 [Errno 98] Address in use\nsent 3\n",
                                 "", 0.0)
        listed = "\n".join(ln.replace("counter drop", "counter packets 2 bytes 84 drop")
                           for ln in self.tables.get(node, "").splitlines() if "4789" not in ln)
        return CommandResult(node, command, 0, listed, "", 0.0)


def test_a_probe_the_sender_could_not_send_is_not_reported_as_dropped():
    from core.doctor.probes import probe_ports

    pool = _FakePool()
    probe = asyncio.run(probe_ports(pool, {"n1": "10.0.0.1", "n2": "10.0.0.2"}, [("n1", "n2")]))
    assert ("n1", "n2", "udp", 4789) not in probe.counts
    assert probe.counts[("n1", "n2", "udp", 7946)] == 2 and probe.counts[("n1", "n2", "tcp", 7946)] == 2
    assert any("could not send udp/4789" in e for e in probe.errors.values())
    assert 'ip saddr 10.0.0.1 udp sport' in pool.tables["n2"] and "priority 500" in pool.tables["n2"]
