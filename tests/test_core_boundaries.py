"""Errors and resources at core's edges, without a lab: a bug stays a bug (never an "unreachable"),
forwards and gRPC channels are closed when replaced, each subsystem has its own bounded threads, and
the watch queue is bounded."""
from __future__ import annotations

import asyncio
import threading

import asyncssh
import docker.errors
import grpc
import pytest

from core.dockerd.clients import DockerNodes
from core.errors import AuthError, DockerError, NodeUnreachable
from core.etcd.read import Endpoint, EtcdReader, Probe, _probe_blocking
from core.etcd.watch import EventQueue
from core.model import ClusterEvent, NodeSpec
from core.ssh import SSHPool

NODE = NodeSpec(name="n1", address="198.18.0.1", known_hosts="/dev/null")


# --- SSH: only transport errors become NodeUnreachable --------------------------------------------------

@pytest.fixture
def known_hosts(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    return str(kh)


async def _connect_raising(monkeypatch, known_hosts, exc):
    async def connect(*a, **kw):
        raise exc

    monkeypatch.setattr(asyncssh, "connect", connect)
    pool = SSHPool([NodeSpec(name="n1", address="198.18.0.1", known_hosts=known_hosts, key="/no/such/key")])
    try:
        await pool.connection("n1")
    finally:
        await pool.close()


async def test_a_refused_connection_is_unreachable(monkeypatch, known_hosts):
    with pytest.raises(NodeUnreachable, match="refused the connection"):
        await _connect_raising(monkeypatch, known_hosts, ConnectionRefusedError())


async def test_a_bad_key_file_is_an_auth_error_naming_it(monkeypatch, known_hosts):
    with pytest.raises(AuthError, match="/no/such/key"):
        await _connect_raising(monkeypatch, known_hosts, FileNotFoundError(2, "No such file", "/no/such/key"))


async def test_a_bug_during_connect_is_not_turned_into_unreachable(monkeypatch, known_hosts):
    with pytest.raises(AttributeError, match="a bug"):
        await _connect_raising(monkeypatch, known_hosts, AttributeError("a bug"))


# --- SSH forwards: a replaced forward's listener is closed ---------------------------------------------

class FakeListener:
    def __init__(self, port: int = 0) -> None:
        self.closed, self.port = False, port

    def close(self) -> None:
        self.closed = True

    def get_port(self) -> int:
        return self.port


class FakeConn:
    def __init__(self) -> None:
        self.listeners: list[FakeListener] = []

    async def forward_local_path(self, local, remote):
        self.listeners.append(FakeListener())
        return self.listeners[-1]

    async def forward_local_port(self, host, port, dest, dest_port):
        self.listeners.append(FakeListener(40000 + len(self.listeners)))
        return self.listeners[-1]

    def is_closed(self) -> bool:
        return False

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def _fake_pool(conn: FakeConn) -> SSHPool:
    pool = SSHPool([NODE])

    async def connection(node):
        return conn

    pool.connection = connection  # type: ignore[method-assign]
    return pool


async def test_forwarding_the_same_socket_again_closes_the_old_listener_and_close_removes_the_dir():
    conn = FakeConn()
    pool = _fake_pool(conn)
    first = await pool.forward_unix("n1", "/var/run/docker.sock")
    again = await pool.forward_unix("n1", "/var/run/docker.sock")
    assert first == again and [lsn.closed for lsn in conn.listeners] == [True, False]
    assert pool.forwards == 1
    port = await pool.forward_tcp("n1", "198.18.0.1", 2379)
    pool.close_forward(port)
    assert conn.listeners[-1].closed and pool.forwards == 1
    fwd_dir = pool._forward_dir
    await pool.close()
    assert all(lsn.closed for lsn in conn.listeners) and pool.forwards == 0
    assert fwd_dir is not None and not __import__("os").path.exists(fwd_dir)


# --- Docker: SDK errors are typed, bugs are not; own bounded threads -----------------------------------

class FakeDockerClient:
    def __init__(self, **kw) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def docker_nodes(monkeypatch):
    monkeypatch.setattr(docker, "DockerClient", FakeDockerClient)
    conn = FakeConn()
    nodes = DockerNodes(_fake_pool(conn), threads=2)
    yield nodes, conn


async def test_docker_refusals_are_typed_and_bugs_propagate(docker_nodes):
    nodes, _ = docker_nodes

    def refuse(cl):
        raise docker.errors.APIError("409 Conflict", explanation="network demo has active endpoints")

    with pytest.raises(DockerError, match="Docker refused: network demo has active endpoints"):
        await nodes.call("n1", refuse)

    def bug(cl):
        return {}["Id"]

    with pytest.raises(KeyError):
        await nodes.call("n1", bug)
    await nodes.close()


async def test_a_connection_error_re_forwards_and_closes_the_old_listener(docker_nodes):
    nodes, conn = docker_nodes

    def down(cl):
        raise ConnectionError("refused")

    for _ in range(5):
        with pytest.raises(DockerError, match="cannot reach the Docker daemon"):
            await nodes.call("n1", down)
    assert len(conn.listeners) == 5 and sum(not lsn.closed for lsn in conn.listeners) == 1
    await nodes.close()


async def test_docker_calls_run_on_the_parts_own_threads_and_close_lets_them_go(docker_nodes):
    nodes, _ = docker_nodes
    names = await asyncio.gather(*(nodes.call("n1", lambda cl: threading.current_thread().name) for _ in range(6)))
    assert all(n.startswith("overlay-tui-docker") for n in names)
    assert len({n for n in names}) <= 2                                   # bounded
    await nodes.close()
    with pytest.raises(RuntimeError):                                     # shut down
        nodes.executor.submit(lambda: None)


# --- etcd: an RPC failure is "no answer", a bug is a bug; dropped channels are closed ---------------------

class Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection refused"


class Stub:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def Status(self, *a):
        raise self.exc


class FakeEtcdClient:
    def __init__(self, exc: BaseException | None = None) -> None:
        self.maintenancestub = Stub(exc or Unavailable())
        self.closed = False

    def close(self) -> None:
        self.closed = True


EP = Endpoint(via="n1", host="198.18.0.1", port=2379)


def test_a_member_that_does_not_answer_is_a_probe_error():
    probe = _probe_blocking(FakeEtcdClient(Unavailable()), Probe(EP), 0.1)  # type: ignore[arg-type]
    assert probe.error is not None and "unavailable: nothing answers there" in probe.error and not probe.healthy


def test_a_bug_while_probing_is_not_called_unreachable():
    with pytest.raises(TypeError):
        _probe_blocking(FakeEtcdClient(TypeError("a bug")), Probe(EP), 0.1)  # type: ignore[arg-type]


@pytest.fixture
def reader(monkeypatch):
    made: list[FakeEtcdClient] = []

    def client(host, port, **kw):
        made.append(FakeEtcdClient())
        return made[-1]

    monkeypatch.setattr("core.etcd.read.etcd3.client", client)
    r = EtcdReader(_fake_pool(FakeConn()), via_ssh=False, threads=2)
    yield r, made


async def test_failed_probes_close_their_channels_instead_of_keeping_them(reader):
    r, made = reader
    for _ in range(20):
        probe = await r.probe(EP)
        assert probe.error
    assert len(made) == 20 and all(c.closed for c in made)          # nothing retired and kept
    assert r.open_clients == 0
    await r.close()


async def test_a_dropped_client_still_in_use_is_closed_when_its_call_ends(reader):
    r, made = reader
    async with r.using(EP) as client:
        r.drop(EP)
        assert not client.closed                                    # a call is using it
    assert client.closed
    await r.close()


async def test_etcd_calls_run_on_the_readers_own_threads(reader):
    r, _ = reader
    name = await r.thread(lambda: threading.current_thread().name)
    assert name.startswith("overlay-tui-etcd")
    await r.close()
    with pytest.raises(RuntimeError):
        r.executor.submit(lambda: None)


# --- the watch queue: bounded, the oldest dropped and counted ---------------------------------------------

async def test_the_watch_queue_drops_the_oldest_and_says_how_many():
    q = EventQueue(maxlen=3)
    for i in range(10):
        q.put_nowait(ClusterEvent("key", "put", f"/k{i}", "v", "v3"))
    assert len(q) == 3 and q.dropped == 7
    notice = await q.get()
    assert (notice.kind, notice.action) == ("watch", "dropped") and notice.value.startswith("7 events dropped")
    assert [(await q.get()).key for _ in range(3)] == ["/k7", "/k8", "/k9"]


async def test_a_failed_producer_ends_the_stream_with_its_exception():
    q = EventQueue()
    waiter = asyncio.create_task(q.get())
    q.fail(ZeroDivisionError("bug in a producer"))
    with pytest.raises(ZeroDivisionError):
        await waiter


# --- etcd reads: a node whose SSH connect failed costs a read CONNECT_PATIENCE, not its connect timeout -------

class _SilentPool:
    """SSHPool.connection for n1: refused while ``down``, then hanging until ``back`` is set."""

    def __init__(self) -> None:
        self.pool = _fake_pool(FakeConn())
        self.conn = self.pool.connection
        self.down, self.back, self.connects = True, asyncio.Event(), 0

        async def connection(node):
            self.connects += 1
            if self.down:
                raise NodeUnreachable("n1", "refused the connection")
            await self.back.wait()
            return await self.conn(node)
        self.pool.connection = connection  # type: ignore[method-assign]


async def _refused_once(monkeypatch, patience: float) -> tuple[_SilentPool, EtcdReader]:
    """A reader whose first connect to n1 was refused, at the given CONNECT_PATIENCE (0: any failure is slow)."""
    import core.etcd.read as read

    monkeypatch.setattr(read, "CONNECT_PATIENCE", patience)
    node = _SilentPool()
    r = EtcdReader(node.pool, threads=1)
    with pytest.raises(NodeUnreachable, match="refused"):
        await r.local_address(EP)
    return node, r


async def test_a_read_waits_briefly_on_a_node_whose_connect_failed_and_its_connect_goes_on(monkeypatch):
    """CONNECT_PATIENCE 0 makes any failed connect a slow one (silence)."""
    import core.etcd.read as read

    node, r = await _refused_once(monkeypatch, 0.0)
    assert r.connects.silent == {"n1"}
    node.down = False
    with pytest.raises(NodeUnreachable, match="no SSH connection within 0 s"):
        await r.local_address(EP)                   # the connect hangs: not waited for beyond the patience
    with pytest.raises(NodeUnreachable, match="no SSH connection within"):
        await r.local_address(EP)                   # the same connect, still going: not started again
    assert node.connects == 2
    monkeypatch.setattr(read, "CONNECT_PATIENCE", 30.0)
    node.back.set()
    assert (await r.local_address(EP))[0] == "127.0.0.1"
    assert r.connects.silent == set()               # connected: a later connect is waited for in full again
    node.back.clear()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r._connection("n1"), 0.5)
    await r.close()


async def test_a_node_that_refused_at_once_is_waited_for_in_full_next_time(monkeypatch):
    _, r = await _refused_once(monkeypatch, 60.0)
    assert r.connects.silent == set()
    await r.close()


async def test_closing_the_reader_stops_a_connect_still_going(monkeypatch):
    node, r = await _refused_once(monkeypatch, 0.0)
    node.down = False
    with pytest.raises(NodeUnreachable):
        await r.local_address(EP)
    [connecting] = r.connects.flight.values()
    await r.close()
    assert connecting.cancelled()
