"""Inventory and runbook hardening (issue 10): zone IDs, quoting, daemon.json writes, host-by-host apply with
rollback, and the pidfile's process checked before it is killed. The shell scripts run for real on a copy of
/etc/docker under a temporary directory."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import stat
import subprocess
from types import SimpleNamespace

import pytest

from core.capture.remote import tcpdump_command
from core.dockerd import store
from core.errors import DockerError, InventoryError
from core.inventory import load_inventory
from core.model import CommandResult


# --- inventory ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["fe80::1%$(id)", "fe80::1%eth0;reboot", "fe80::1%a b", "fe80::1%`x`"])
def test_an_ipv6_zone_id_is_letters_digits_and_dot_dash_underscore_only(tmp_path, address):
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[[node]]\nname = "n1"\naddress = "{address}"\n')
    with pytest.raises(InventoryError, match="zone ID"):
        load_inventory(inv)
    inv.write_text(f'[[node]]\nname = "n1"\naddress = "fe80::1%eth0"\nadvertise = "{address}"\n')
    with pytest.raises(InventoryError, match="zone ID"):
        load_inventory(inv)


def test_a_good_zone_id_is_kept():
    import tempfile
    from pathlib import Path
    d = Path(tempfile.mkdtemp())
    (d / "inventory.toml").write_text('[[node]]\nname = "n1"\naddress = "fe80::1%eth0.5"\n')
    assert load_inventory(d / "inventory.toml").nodes[0].address == "fe80::1%eth0.5"


@pytest.mark.parametrize("iface", ["<underlay>", "eth0", "UNDERLAY-INTERFACE", "a b"])
def test_the_capture_command_quotes_every_interface_even_a_placeholder(iface):
    cmd = tcpdump_command(iface, 4789)
    words = shlex.split(cmd)
    assert words[words.index("-i") + 1] == iface           # one word, whatever it holds
    assert f"-i {iface} " not in cmd or shlex.quote(iface) == iface


# --- daemon.json on disk ----------------------------------------------------------------------------------
def _run(script: str, root, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script.replace("/etc/docker", str(root / "etc/docker"))],
                          input=stdin, capture_output=True, text=True, timeout=30)


def test_daemon_json_keeps_its_mode_and_owner_and_is_replaced_whole(tmp_path):
    d = tmp_path / "etc/docker"
    d.mkdir(parents=True)
    f = d / "daemon.json"
    f.write_text('{"debug": true}\n')
    f.chmod(0o640)
    os.chown(f, 1, 2)
    res = _run(store.WRITE_SCRIPT, tmp_path, json.dumps({"debug": True, "cluster-store": "etcd://x"}))
    assert res.returncode == 0, res.stderr
    st = f.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1, 2)
    assert json.loads(f.read_text())["cluster-store"] == "etcd://x"
    assert (d / "daemon.json.overlay-tui.prev").read_text() == '{"debug": true}\n'
    assert not (d / "daemon.json.overlay-tui.tmp").exists()
    assert _run(store.ROLLBACK_SCRIPT, tmp_path).returncode == 0               # the rollback puts it back
    assert f.read_text() == '{"debug": true}\n' and stat.S_IMODE(f.stat().st_mode) == 0o640


def test_a_new_daemon_json_is_0644_root_and_a_rollback_removes_it(tmp_path):
    (tmp_path / "etc/docker").mkdir(parents=True)
    assert _run(store.WRITE_SCRIPT, tmp_path, "{}\n").returncode == 0
    f = tmp_path / "etc/docker/daemon.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o644 and f.stat().st_uid == 0
    assert _run(store.ROLLBACK_SCRIPT, tmp_path).returncode == 0
    assert not f.exists()


def test_a_symlinked_daemon_json_is_refused_and_its_target_untouched(tmp_path):
    d = tmp_path / "etc/docker"
    d.mkdir(parents=True)
    target = tmp_path / "shadow"
    target.write_text("root:x:0:0\n")
    (d / "daemon.json").symlink_to(target)
    res = _run(store.WRITE_SCRIPT, tmp_path, "{}\n")
    assert res.returncode == 3 and "symbolic link" in res.stderr
    assert target.read_text() == "root:x:0:0\n" and (d / "daemon.json").is_symlink()


# --- the pidfile --------------------------------------------------------------------------------------------
class FakePool:
    """Answers `cat /proc/PID/comm` from a table and records every command."""

    def __init__(self, comm: dict[int, str]) -> None:
        self.comm, self.commands = comm, []

    async def run(self, node, command, **kw):
        self.commands.append(command)
        out = ""
        for pid, name in self.comm.items():
            if f"/proc/{pid}/comm" in command:
                out = name + "\n"
        return CommandResult(node, command, 0, out, "", 0.0)

    async def kill(self, node, pid, **kw):
        self.commands.append(f"kill {pid}")
        return True

    async def start_detached(self, node, command, log):
        self.commands.append(f"start {command}")
        return 4242


async def test_the_pidfile_process_is_killed_and_relaunched_only_if_it_is_dockerd():
    facts = store.NodeDockerFacts("n1", "20.10", "", "", False, pid=77, args=["bash", "-c", "evil"])
    pool = FakePool({77: "bash"})
    with pytest.raises(DockerError, match="not dockerd; nothing was killed"):
        await store.restart_docker(pool, "n1", facts)
    assert not any(c.startswith(("kill", "start")) for c in pool.commands)
    pool = FakePool({77: "dockerd"})
    facts.args = ["dockerd", "--data-root", "/x"]
    assert await store.restart_docker(pool, "n1", facts) == 4242
    assert "kill 77" in pool.commands and "start dockerd --data-root /x" in pool.commands


def test_the_facts_read_arguments_only_from_a_dockerd():
    assert "/proc/$pid/comm" in store.FACTS_SCRIPT and "= dockerd" in store.FACTS_SCRIPT


# --- host by host, stop and roll back ----------------------------------------------------------------------
async def test_apply_stops_at_the_first_host_that_fails_and_rolls_it_back(monkeypatch):
    inventory = SimpleNamespace(nodes=[SimpleNamespace(name=n) for n in ("n1", "n2", "n3")])

    class Addresses:                 # n1's store key sorts last: it is the gossip seed, applied first
        async def all(self, nodes):
            return {"n1": "198.18.0.9", "n2": "198.18.0.2", "n3": "198.18.0.3"}

    planned, changed, rolled = [], [], []

    async def plan_node(docker, pool, addresses, inv, node):
        planned.append(node)
        facts = store.NodeDockerFacts(node, "20.10", "", "", False, pid=1)
        return store.DockerStoreChange(node, "configure", "x", want_store="etcd://s", facts=facts)

    async def change_node(docker, pool, node, change, facts):
        changed.append(node)
        if node == "n2":
            raise DockerError("n2: dockerd did not come back")

    async def rollback_node(docker, pool, node, facts):
        rolled.append(node)
        return f"{node} is back on its original daemon.json and Docker"

    monkeypatch.setattr(store, "plan_node", plan_node)
    monkeypatch.setattr(store, "_change_node", change_node)
    monkeypatch.setattr(store, "rollback_node", rollback_node)
    with pytest.raises(DockerError) as e:
        await store.apply(None, None, Addresses(), inventory, wave=1)
    # every host is planned first (read only); n3 is never changed
    assert planned == ["n1", "n2", "n3"] and changed == ["n1", "n2"] and rolled == ["n2"]
    assert "n2 is back on its original daemon.json" in str(e.value) and "n3 left untouched" in str(e.value)


# --- on the lab: one host refuses the change; it is rolled back and the next host is never touched --------
@pytest.mark.lab
async def test_a_host_that_does_not_come_back_is_rolled_back_and_the_others_are_untouched(classic2, monkeypatch):
    from core.live import LiveService

    svc = LiveService(classic2.inventory)
    ips = await svc.addresses.all(classic2.inventory.nodes)
    first = store.gossip_seed({n: f"{ip}:{store.ADVERTISE_PORT}" for n, ip in ips.items()})   # applied first
    second = next(n.name for n in classic2.inventory.nodes if n.name != first)
    spec = {n.name: n for n in classic2.nodes}

    async def sh(node: str, cmd: str, **kw) -> str:
        return (await svc.pool.run(spec[node], cmd, check=True, **kw)).stdout

    originals = {n: await sh(n, f"cat {store.DAEMON_JSON}") for n in (first, second)}
    try:
        for n in (first, second):        # each file now lacks a store key: both hosts need the change again
            cfg = {k: v for k, v in json.loads(originals[n]).items() if k != "cluster-advertise"}
            await sh(n, f"cat > {store.DAEMON_JSON}", input=json.dumps(cfg))
        before = {n: await sh(n, f"cat {store.DAEMON_JSON}") for n in (first, second)}
        pids = {n: (await sh(n, f"cat {store.PIDFILE}")).strip() for n in (first, second)}
        real_write = store.write_daemon_json

        async def refused_on_first(pool, node, facts, st, adv, *rest):
            if node == first:            # a change dockerd refuses to start with
                facts = dataclasses.replace(facts, daemon_json={**(facts.daemon_json or {}), "bogus-key-for-test": 1})
            await real_write(pool, node, facts, st, adv, *rest)

        monkeypatch.setattr(store, "write_daemon_json", refused_on_first)
        with pytest.raises(DockerError) as e:
            await store.apply(svc.docker, svc.pool, svc.addresses, classic2.inventory, wave=1)
        text = str(e.value)
        assert f"{first} is back on its original daemon.json" in text and f"{second} left untouched" in text
        assert await sh(first, f"cat {store.DAEMON_JSON}") == before[first]          # restored as it was
        new_pid = (await sh(first, f"cat {store.PIDFILE}")).strip()
        assert (await sh(first, f"cat /proc/{new_pid}/comm")).strip() == "dockerd"   # Docker is back on it
        info = await svc.docker.call(first, lambda cl: cl.info())
        assert info.get("ClusterStore") == f"etcd://{spec[first].address}:2379"
        assert await sh(second, f"cat {store.DAEMON_JSON}") == before[second]        # never touched
        assert (await sh(second, f"cat {store.PIDFILE}")).strip() == pids[second]
    finally:
        monkeypatch.undo()
        for n in (first, second):
            await sh(n, f"cat > {store.DAEMON_JSON}", input=originals[n])
        await store.apply(svc.docker, svc.pool, svc.addresses, classic2.inventory)   # the lab as it was
        assert [c.action for c in await svc.docker_store_plan()] == ["none", "none"]
        await svc.close()
