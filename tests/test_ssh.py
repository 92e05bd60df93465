"""core.ssh on the real 2-node lab: commands, detached processes, streams, forwards, host keys."""
from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from pathlib import Path

import pytest

from core.errors import CommandFailed, CommandTimeout, HostKeyError, NodeUnreachable
from core.ssh import SSHPool

pytestmark = pytest.mark.lab


@pytest.fixture
async def pool(lab2):
    p = SSHPool(lab2.nodes)
    try:
        yield p
    finally:
        await p.close()


async def test_hostname_answers_each_node_name(lab2, pool):
    names = [(await pool.run(n, "hostname", check=True)).stdout.strip() for n in lab2.nodes]
    assert names == ["docker-node1", "docker-node2"]


async def test_docker_info_reaches_each_nodes_own_daemon(lab2, pool):
    ids = []
    for n in lab2.nodes:
        res = await pool.run(n, "docker info --format '{{.ID}} {{.Name}}'", check=True)
        daemon_id, name = res.stdout.split()
        assert name == n.name
        ids.append(daemon_id)
    assert len(set(ids)) == 2


async def test_run_reports_status_output_and_duration(lab2, pool):
    res = await pool.run(lab2.nodes[0], "echo out; echo err >&2; exit 3")
    assert (res.exit_status, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert not res.ok and 0 < res.duration < 5
    with pytest.raises(CommandFailed, match="exited 3"):
        await pool.run(lab2.nodes[0], "echo boom >&2; exit 3", check=True)


async def test_run_times_out_with_a_typed_error(lab2, pool):
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout):
        await pool.run(lab2.nodes[0], "sleep 30", timeout=0.5)
    assert time.monotonic() - t0 < 3


async def test_start_detached_outlives_the_session_and_kill_stops_it(lab2, pool):
    node = lab2.nodes[1]
    pid = await pool.start_detached(node, "sleep 300", "/tmp/overlay-tui-test-sleep.log")
    await pool.close()                      # the process must outlive the connection
    assert (await pool.run(node, f"kill -0 {pid}")).ok
    assert await pool.kill(node, pid) is True
    assert not (await pool.run(node, f"kill -0 {pid}")).ok
    assert await pool.kill(node, pid) is False   # already gone


async def test_stream_delivers_stdout_bytes_and_stop_kills_it(lab2, pool):
    node = lab2.nodes[0]
    short = await pool.stream(node, "sh -c 'printf abc; sleep 0.2; printf \"\\000def\"'")
    data = b"".join([c async for c in short.chunks()])
    assert data == b"abc\x00def"
    endless = await pool.stream(node, "yes overlay")
    first = await endless.chunks().__anext__()
    assert first.startswith(b"overlay\n")
    await endless.stop()
    assert not (await pool.run(node, f"kill -0 {endless.pid}")).ok

async def test_a_stream_that_ignores_sigterm_is_killed_with_its_children_on_stop(lab2, pool):
    node = lab2.nodes[0]
    # a shell that ignores TERM and waits on a child that ignores it too (as a tcpdump stuck in a write would)
    stuck = await pool.stream(node, "sh -c 'trap \"\" TERM; sh -c \"trap \\\"\\\" TERM; "
                                    "echo child \\$\\$; while :; do sleep 0.05; done\" & wait'")
    line = await stuck.chunks().__anext__()
    child = int(line.split()[1])
    assert (await pool.run(node, f"kill -0 {child}")).ok
    await stuck.stop()
    assert not (await pool.run(node, f"kill -0 {stuck.pid}")).ok
    assert not (await pool.run(node, f"kill -0 {child}")).ok, "the child outlived the stop"



async def test_forward_unix_reaches_the_nodes_docker_socket(lab2, pool):
    import docker

    node = lab2.nodes[1]
    expected = (await pool.run(node, "docker info --format '{{.ID}}'", check=True)).stdout.strip()
    local = await pool.forward_unix(node, "/var/run/docker.sock")
    # the SDK blocks (its constructor too): keep it off the loop that runs the forwarder
    client = await asyncio.to_thread(docker.DockerClient, base_url=f"unix://{local}")
    try:
        info = await asyncio.to_thread(client.info)
    finally:
        client.close()
    assert info["ID"] == expected and info["Name"] == "docker-node2"


def _known_hosts_with(tmp_path: Path, lines: list[str]) -> str:
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(line + "\n" for line in lines))
    return str(kh)


async def test_unknown_host_key_is_refused(lab2, tmp_path):
    node1, node2 = lab2.nodes
    others = [ln for ln in Path(node1.known_hosts).read_text().splitlines() if not ln.startswith(node1.address + " ")]
    spec = dataclasses.replace(node1, known_hosts=_known_hosts_with(tmp_path, others))
    p = SSHPool([spec])
    try:
        with pytest.raises(HostKeyError, match="not trusted"):
            await p.run(spec, "true")
        assert (await SSHPool([node2]).run(node2, "true")).ok   # the same file still trusts node2
    finally:
        await p.close()


async def test_changed_host_key_is_refused(lab2, tmp_path):
    node1 = lab2.nodes[0]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    spec = dataclasses.replace(node1, known_hosts=_known_hosts_with(tmp_path, [f"{node1.address} {kind} {key}"]))
    p = SSHPool([spec])
    try:
        with pytest.raises(HostKeyError):
            await p.run(spec, "true")
    finally:
        await p.close()


async def test_dead_address_is_unreachable_within_the_timeout(lab2):
    dead = lab2.info.subnet.rsplit(".", 1)[0] + ".200"      # inside the lab's /24, nobody there
    spec = dataclasses.replace(lab2.nodes[0], name="ghost", address=dead, advertise=dead, connect_timeout=1.5)
    p = SSHPool([spec])
    t0 = time.monotonic()
    try:
        with pytest.raises(NodeUnreachable, match="ghost"):
            await p.run(spec, "true")
    finally:
        await p.close()
    assert time.monotonic() - t0 < 4
