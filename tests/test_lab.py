"""The local lab on the real machine: CLI, idempotence, teardown, side-by-side labs, host-likeness."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import lab_name, require_lab, start_lab, stop_lab

from core.errors import LabError
from core.inventory import load_inventory
from core.lab import manager as lab_mod
from core.lab import net as lab_net
from core.ssh import SSHPool

pytestmark = pytest.mark.lab
CLI = str(Path(sys.executable).parent / "overlay-tui")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})})


def leftovers(info: lab_mod.LabInfo) -> list[str]:
    """Everything of lab ``info`` still present on the machine (empty when it is fully down)."""
    names = lab_net.LabNames(info.name)
    found = [f"netns {ns}" for ns in lab_net.list_netns() if names.owns_netns(ns)]
    if lab_net.ip("link", "show", info.seat_link, check=False).returncode == 0:
        found.append(f"link {info.seat_link}")
    found += [f"process {n.pid}" for n in info.nodes if lab_mod.lab_node.alive(n.pid)]
    found += [f"process {n.init_pid}" for n in info.nodes if n.init_pid and lab_mod.lab_node.alive(n.init_pid)]
    with open("/proc/self/mountinfo") as fh:
        found += [f"mount {line.split()[4]}" for line in fh
                  if info.dir in line or any(f"/run/netns/{n.netns}" in line for n in info.nodes)]
    if Path(info.dir).exists():
        found.append(f"dir {info.dir}")
    if info.seat_address in lab_net.ip("-4", "-o", "addr", "show").stdout:
        found.append(f"address {info.seat_address}")
    return found


def pids_running(needle: bytes) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes() == needle and lab_mod.lab_node.alive(int(p.name)):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


# ------------------------------------------------------------------ the CLI, end to end

def test_cli_up_status_idempotent_up_down():
    require_lab()
    name = lab_name("cli")
    try:
        up = cli("lab", "up", "--name", name)
        assert up.returncode == 0, up.stderr
        assert "2 nodes on 198.18." in up.stdout
        st = cli("lab", "status", "--name", name, "--json")
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        assert list(data) == ["name", "inventory", "nodes"] and data["name"] == name
        assert load_inventory(data["inventory"]).nodes[0].name == "docker-node1"
        assert [n["name"] for n in data["nodes"]] == ["docker-node1", "docker-node2"]
        for n in data["nodes"]:
            assert list(n) == ["name", "address", "ssh_user", "ssh_port", "ssh_key", "known_hosts", "reachable"]
            assert n["address"].startswith("198.18.") and n["ssh_user"] == "root" and n["ssh_port"] == 22
            assert Path(n["ssh_key"]).is_file() and Path(n["known_hosts"]).is_file() and n["reachable"] is True
        info = lab_mod.lab_state(name)
        with open("/proc/self/mountinfo") as fh:     # the nodes' mounts stay in their own mount namespaces
            assert [line for line in fh if info.dir in line] == []
        again = cli("lab", "up", "--name", name)
        assert again.returncode == 0 and "already up" in again.stdout
        assert lab_mod.lab_state(name) == info          # same pids, namespaces, index: nothing rebuilt
        grown = cli("lab", "up", "--name", name, "--nodes", "3")      # a bigger count adds nodes, keeps the others
        assert grown.returncode == 0 and "docker-node3: added" in grown.stdout, grown.stderr
        assert [n["name"] for n in json.loads(cli("lab", "status", "--name", name, "--json").stdout)["nodes"]] == \
            ["docker-node1", "docker-node2", "docker-node3"]
        assert [n for n in lab_mod.lab_state(name).nodes if n.name != "docker-node3"] == list(info.nodes)
        info = lab_mod.lab_state(name)
        down = cli("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert leftovers(info) == []
        gone = cli("lab", "status", "--name", name)
        assert gone.returncode == 1 and "is not up" in gone.stderr and "Traceback" not in gone.stderr
    finally:
        stop_lab(name)


def test_cli_rejects_bad_names_and_counts():
    for args in (["lab", "up", "--name", "bad name"], ["lab", "up", "--name", "x", "--nodes", "0"]):
        res = cli(*args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


def test_cli_without_root_is_a_clear_error(tmp_path):
    require_lab()
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", CLI, "lab", "up",
                          "--name", lab_name("nr")], capture_output=True, text=True,
                         env={**os.environ, "OVERLAY_TUI_STATE": str(tmp_path)}, cwd="/")
    assert res.returncode == 1 and "needs root" in res.stderr and "Traceback" not in res.stderr


# ------------------------------------------------------------------ labs side by side

def test_two_labs_side_by_side_do_not_collide(lab2, lab3):
    a, b = lab2.info, lab3.info
    assert a.index != b.index and a.seat_link != b.seat_link
    assert not {n.netns for n in a.nodes} & {n.netns for n in b.nodes}
    assert not {n.address for n in lab2.nodes} & {n.address for n in lab3.nodes}
    assert a.dir != b.dir
    assert lab2.inventory.cluster.network_subnet != lab3.inventory.cluster.network_subnet

    async def check() -> None:
        pa, pb = SSHPool(lab2.nodes), SSHPool(lab3.nodes)
        try:
            names = [(await pa.run(n, "hostname", check=True)).stdout.strip() for n in lab2.nodes]
            names += [(await pb.run(n, "hostname", check=True)).stdout.strip() for n in lab3.nodes]
            assert names == ["docker-node1", "docker-node2", "docker-node1", "docker-node2", "docker-node3"]
            # within a lab the underlay works; across labs there is no route
            assert (await pa.run(lab2.nodes[0], f"ping -c1 -W2 {lab2.nodes[1].address}")).ok
            across = await pa.run(lab2.nodes[0], f"ping -c1 -W1 {lab3.nodes[0].address}")
            assert not across.ok
        finally:
            await pa.close()
            await pb.close()

    asyncio.run(check())


def test_labs_started_at_the_same_moment_get_distinct_subnets():
    require_lab()
    names = [lab_name("p1"), lab_name("p2")]
    try:
        procs = [subprocess.Popen([CLI, "lab", "up", "--name", n], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for n in names]
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
        infos = [lab_mod.lab_state(n) for n in names]
        assert infos[0].index != infos[1].index
        for info in infos:
            st = asyncio.run(lab_mod.lab_status(info.name))
            assert all(n["reachable"] for n in st["nodes"])
    finally:
        for n in names:
            stop_lab(n)


def test_same_name_from_another_state_dir_is_refused(lab2, tmp_path):
    for action in ("up", "down"):
        res = cli("lab", action, "--name", lab2.name, env={"OVERLAY_TUI_STATE": str(tmp_path)})
        assert res.returncode == 1 and "another state dir" in res.stderr, res.stderr
    assert lab_mod.lab_state(lab2.name) is not None


# ------------------------------------------------------------------ a node looks like a host

@pytest.fixture(scope="module")
def fresh2():
    """A 2-node lab nobody else touches (lab2 is shared: other modules start etcd on it)."""
    require_lab()
    name = lab_name("f")
    try:
        yield start_lab(name, 2)
    finally:
        stop_lab(name)


async def test_node_looks_like_a_fresh_docker_host(fresh2):
    lab2 = fresh2
    pool = SSHPool(lab2.nodes)
    try:
        for i, node in enumerate(lab2.nodes, start=1):
            script = ("hostname; echo routes-out=$(ip route show default | wc -l); docker info --format '{{.DockerRootDir}} {{.Name}}'; "
                      "test -s /var/log/dockerd.log && echo dockerd-log; "
                      "cat /var/run/docker.pid; pgrep -x etcd || echo no-etcd; command -v etcd; "
                      "cat /etc/docker/daemon.json; getent hosts docker-node1")
            out = (await pool.run(node, script, check=True)).stdout
            assert out.startswith(f"docker-node{i}\n")
            assert "routes-out=0\n" in out                       # nothing routes out of the lab
            assert f"/var/lib/docker docker-node{i}" in out and "dockerd-log" in out
            assert "no-etcd" in out and "/usr/bin/etcd" in out   # installed, not started
            assert '"bip": "198.19.255.1/24"' in out
            assert f"{lab2.nodes[0].address}" in out.splitlines()[-1]
        # /tmp, /etc/ssh and /var/log are each node's own, as on separate machines
        for node in lab2.nodes:
            await pool.run(node, "touch /tmp/marker-$(hostname) /var/log/marker-$(hostname)", check=True)
        for i, node in enumerate(lab2.nodes, start=1):
            out = (await pool.run(node, "ls /tmp /var/log; grep ^ListenAddress /etc/ssh/sshd_config", check=True)).stdout
            assert f"marker-docker-node{i}" in out and f"marker-docker-node{3 - i}" not in out
            assert f"ListenAddress {node.address}:22" in out
        assert not list(Path("/tmp").glob("marker-docker-node*"))
    finally:
        await pool.close()


def test_lab_inventory_is_an_ordinary_inventory(lab2):
    inv = load_inventory(lab2.inventory_path)
    assert [n.name for n in inv.nodes] == ["docker-node1", "docker-node2"]
    for n in inv.nodes:
        assert n.user == "root" and n.port == 22 and n.key == lab2.info.key and n.known_hosts == lab2.info.known_hosts
        assert n.address.startswith(f"198.18.{lab2.info.index}.")
    assert inv.cluster.network_subnet == f"198.19.{lab2.info.index}.0/24"


# ------------------------------------------------------------------ dockerd restart and full teardown

BUSYBOX_IMPORT = ("rm -rf /tmp/bb && mkdir -p /tmp/bb/bin && cp /bin/busybox /tmp/bb/bin/ && "
                  "for c in sh sleep; do ln -s busybox /tmp/bb/bin/$c; done && "
                  "tar -C /tmp/bb -c . | docker import - lab/busybox:1 >/dev/null")


def test_dockerd_restart_over_ssh_and_down_kills_containers():
    """Restart dockerd as an operator would; then `lab down` also ends the node's containers."""
    require_lab()
    name = lab_name("d")
    h = start_lab(name, 1)
    try:
        async def drive() -> str:
            pool = SSHPool(h.nodes)
            node = h.nodes[0]
            try:
                first = (await pool.run(node, "docker info --format '{{.ID}}'", check=True)).stdout.strip()
                await pool.run(node, "kill $(cat /var/run/docker.pid); "
                               "for i in $(seq 100); do [ -e /var/run/docker.pid ] || break; sleep 0.1; done", check=True)
                assert not (await pool.run(node, "docker info")).ok
                await pool.run(node, "nohup setsid dockerd > /var/log/dockerd.log 2>&1 < /dev/null &", check=True)
                again = await pool.run(node, "for i in $(seq 150); do docker info --format '{{.ID}}' 2>/dev/null "
                                       "&& exit 0; sleep 0.1; done; exit 1", check=True)
                assert again.stdout.strip() == first
                await pool.run(node, BUSYBOX_IMPORT, check=True, timeout=60)
                res = await pool.run(node, "docker run -d --name sleeper lab/busybox:1 sleep 31337", check=True)
                return res.stdout.strip()
            finally:
                await pool.close()

        cid = asyncio.run(drive())
        assert pids_running(b"sleep\x0031337\x00"), "the container's process should run before down"
        info = h.info
    finally:
        stop_lab(name)
    assert leftovers(info) == []
    assert pids_running(b"sleep\x0031337\x00") == []
    assert not list(Path("/sys/fs/cgroup").glob(f"*/docker/{cid}"))


# ------------------------------------------------------------------ half-built labs

def test_half_built_lab_is_cleaned_by_down_and_rebuilt_by_up(monkeypatch):
    require_lab()
    name = lab_name("h")

    async def never_ready(info, timeout, docker):
        raise LabError("simulated: nodes never became ready")

    monkeypatch.setattr(lab_mod, "wait_ready", never_ready)
    try:
        with pytest.raises(LabError, match="simulated"):
            asyncio.run(lab_mod.lab_up(name, 2))
        state = json.loads((lab_mod.lab_dir(name) / "state.json").read_text())
        assert state["phase"] == "building" and lab_mod.lab_state(name) is None
        half = lab_mod.info_from_state(state)
        assert all(lab_mod.lab_node.alive(n.pid) for n in half.nodes)    # processes were running
        res = cli("lab", "down", "--name", name)
        assert res.returncode == 0, res.stderr
        assert leftovers(half) == []
        # leftovers without any state (a crash before state.json): a bare namespace with a process in it
        ns = lab_net.LabNames(name).node_ns(1)
        lab_net.ip("netns", "add", ns)
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "sleep", "31338"])
        try:
            # down must find it in the namespace: wait until nsenter has entered it and exec'd sleep
            for _ in range(100):
                if Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"sleep"):
                    break
                time.sleep(0.05)
            lab_mod.lab_down(name)
            assert proc.wait(timeout=10) == -9
        finally:
            if proc.poll() is None:
                proc.kill()
        assert ns not in lab_net.list_netns()
        # and a failed build followed by a good `lab up` gives a working lab
        with pytest.raises(LabError):
            asyncio.run(lab_mod.lab_up(name, 1))
        monkeypatch.undo()
        info = asyncio.run(lab_mod.lab_up(name, 1))
        assert info.seconds > 0 and len(info.nodes) == 1
    finally:
        monkeypatch.undo()
        stop_lab(name)


async def test_live_service_sees_the_lab_as_ordinary_hosts(lab_service2):
    """The rest of the tool drives the lab through its inventory only (the lab_service2 fixture)."""
    statuses = await lab_service2.nodes()
    assert [(s.name, s.reachable, s.hostname) for s in statuses] == [
        ("docker-node1", True, "docker-node1"), ("docker-node2", True, "docker-node2")]
    assert all(s.docker_version and s.etcd_state in ("stopped", "running") for s in statuses)


def test_missing_binary_names_its_debian_package(monkeypatch):
    from core.lab import state as lab_state

    monkeypatch.setitem(lab_state.REQUIRED_BINARIES, "overlay-tui-no-such-daemon", "overlay-tui-fake-pkg")
    expected = "install the Debian package.*overlay-tui-fake-pkg.*make run" if os.geteuid() == 0 else "needs root"
    with pytest.raises(LabError, match=expected):
        lab_state.check_can_run()


def test_namespace_names_of_one_lab_never_match_another():
    a, b = lab_net.LabNames("x"), lab_net.LabNames("x-n1")
    assert a.owns_netns("ot-x-n1") and a.owns_netns("ot-x-sw") and a.owns_netns("ot-x-n12")
    assert not a.owns_netns("ot-x-n1-n1") and not a.owns_netns("ot-x-n1-sw") and not a.owns_netns("ot-xy-n1")
    assert b.owns_netns("ot-x-n1-n2") and not b.owns_netns("ot-x-n1")
    assert len(lab_net.LabNames("a" * 32).seat_link) <= 15 and a.seat_link != b.seat_link


def test_labs_of_a_dead_pytest_session_are_swept():
    import conftest

    require_lab()
    root = Path(tempfile.mkdtemp(prefix=conftest.TEST_STATE_PREFIX))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (root / "pytest.pid").write_text(str(dead.pid))
    name = lab_name("z")
    res = cli("lab", "up", "--name", name, "--nodes", "1", env={"OVERLAY_TUI_STATE": str(root)})
    assert res.returncode == 0, res.stderr
    info = lab_mod.info_from_state(json.loads((root / "labs" / name / "state.json").read_text()))
    conftest._sweep_stale_test_labs()
    assert leftovers(info) == [] and not root.exists()
