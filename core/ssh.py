"""An asyncssh connection pool: one reused connection per node.

Run commands, start and stop detached processes, stream a process's stdout as bytes, and
forward a local unix socket to a remote one (the Docker SDK rides on that). Host keys are
always checked against a known_hosts file; every failure becomes a typed :mod:`core.errors`
error, and every wait has a timeout.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh

from core.errors import AuthError, CommandFailed, CommandTimeout, HostKeyError, NodeUnreachable, SSHError
from core.model import CommandResult, NodeSpec

log = logging.getLogger(__name__)

#: seconds a stopped stream's process gets to end on SIGTERM before it and its process group get SIGKILL
STREAM_GRACE = 3.0
#: seconds a stream's stop waits in all for its process to be gone
STREAM_STOP_WAIT = 6.0


def _known_hosts_path(node: NodeSpec) -> str:
    return node.known_hosts or os.path.expanduser("~/.ssh/known_hosts")


def map_ssh_error(node: NodeSpec, exc: BaseException) -> SSHError:
    """Turn an asyncssh/OS error into the typed error an operator can act on."""
    where = f"{node.address}{':' + str(node.port) if node.port else ''}"
    if isinstance(exc, SSHError):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyError(node.name, f"host key of {where} is not trusted by {_known_hosts_path(node)} "
                            "(unknown or changed); check the host, then add its key with "
                            f"`ssh-keyscan -p {node.port or 22} {node.address} >> {_known_hosts_path(node)}`")
    if isinstance(exc, asyncssh.KeyImportError) or (isinstance(exc, OSError) and node.key
                                                      and exc.filename == node.key):
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return AuthError(node.name, f"cannot use the key {node.key}: {why}; check the "
                         "inventory's `key` for this node")
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthError(node.name, f"{where} refused our key{' ' + node.key if node.key else ''} for user "
                         f"{node.user or 'default'}; add its public key to the node's authorized_keys")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return NodeUnreachable(node.name, f"no answer from {where} within {node.connect_timeout:g} s; "
                               "check that the host is up and sshd listens there")
    if isinstance(exc, ConnectionRefusedError):
        return NodeUnreachable(node.name, f"{where} refused the connection; is sshd running on that port?")
    if isinstance(exc, OSError):
        return NodeUnreachable(node.name, f"cannot reach {where}: {exc.strerror or exc}")
    if isinstance(exc, asyncssh.Error):
        return NodeUnreachable(node.name, f"SSH to {where} failed: {exc.reason}")
    return NodeUnreachable(node.name, f"SSH to {where} failed: {exc!r}")


class RemoteStream:
    """A remote process whose stdout arrives as bytes chunks; ``stop()`` kills it by pid."""

    def __init__(self, pool: SSHPool, node: NodeSpec, process: asyncssh.SSHClientProcess, pid: int) -> None:
        self.pool, self.node, self.process, self.pid = pool, node, process, pid

    async def chunks(self, size: int = 65536) -> AsyncIterator[bytes]:
        while True:
            data = await self.process.stdout.read(size)
            if not data:
                return
            yield data

    async def stderr_text(self) -> str:
        try:
            data = await asyncio.wait_for(self.process.stderr.read(), 2)
        except (TimeoutError, asyncssh.Error, OSError):
            return ""
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    async def stop(self) -> None:
        """Kill the remote process (signals over the channel are not honoured by OpenSSH): SIGTERM, then after
        ``STREAM_GRACE`` s SIGKILL to it and its process group, so nothing it started outlives the stop."""
        try:
            await self.pool.kill(self.node, self.pid, wait=STREAM_STOP_WAIT, escalate=STREAM_GRACE)
        except SSHError as e:            # closing the channel below is what is left
            log.warning("%s: could not kill pid %s: %s", self.node.name, self.pid, e)
        self.process.close()


def private_key_problem(path: str) -> str | None:
    """OpenSSH's rule for a private key file: readable by its owner only. Why ``path`` is refused, or None."""
    p = os.path.expanduser(path)
    try:
        st = os.stat(p)
    except OSError:
        return None                      # a missing key is asyncssh's to report (it names the file)
    if st.st_mode & 0o077:
        return (f"private key {p} is readable or writable by others (mode {st.st_mode & 0o777:04o}); OpenSSH "
                f"refuses such a key and so does overlay-tui: run `chmod 600 {p}`")
    if st.st_uid not in (os.geteuid(), 0):
        return f"private key {p} belongs to uid {st.st_uid}, not to this user; copy it and chmod 600 the copy"
    return None


class SSHPool:
    """One asyncssh connection per node, opened on first use and reused."""

    def __init__(self, nodes: tuple[NodeSpec, ...] | list[NodeSpec]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, tuple[float, SSHError]] = {}   # node -> (when, why) of its last failed connect
        self._forward_dir: str | None = None
        self._listeners: dict[str | int, asyncssh.SSHListener] = {}   # local socket path or port -> listener

    def spec(self, node: NodeSpec | str) -> NodeSpec:
        return node if isinstance(node, NodeSpec) else self.nodes[node]

    async def connection(self, node: NodeSpec | str) -> asyncssh.SSHClientConnection:
        spec = self.spec(node)
        lock = self._locks.setdefault(spec.name, asyncio.Lock())
        asked = time.monotonic()
        async with lock:
            conn = self._conns.get(spec.name)
            if conn is not None and not conn.is_closed():
                return conn
            failed = self._failed.get(spec.name)
            if failed is not None and failed[0] >= asked:
                # a connect that failed while we waited for it: its answer is ours too (a node that does
                # not answer costs one timeout per round, not one per caller queued behind it)
                raise failed[1]
            kh = _known_hosts_path(spec)
            if not os.path.isfile(kh):
                raise HostKeyError(spec.name, f"known_hosts file {kh} does not exist, so the host key of "
                                   f"{spec.address} cannot be verified; create it with ssh-keyscan after checking the host")
            opts: dict = dict(known_hosts=kh, connect_timeout=spec.connect_timeout,
                              keepalive_interval=15, keepalive_count_max=3)
            if spec.user:
                opts["username"] = spec.user
            if spec.port:
                opts["port"] = spec.port
            if spec.key:
                problem = private_key_problem(spec.key)
                if problem:
                    raise AuthError(spec.name, problem)
                opts["client_keys"] = [spec.key]
                opts["agent_path"] = None
            try:
                conn = await asyncio.wait_for(asyncssh.connect(spec.address, **opts), spec.connect_timeout + 1)
            except (OSError, asyncssh.Error, asyncssh.KeyImportError, TimeoutError) as e:
                err = map_ssh_error(spec, e)
                self._failed[spec.name] = (time.monotonic(), err)
                raise err from None
            self._failed.pop(spec.name, None)
            self._conns[spec.name] = conn
            return conn

    def forget(self, node: NodeSpec | str) -> None:
        """Close and drop the node's connection (it hung): the next call connects afresh, with its timeout."""
        conn = self._conns.pop(self.spec(node).name, None)
        if conn is not None:
            conn.abort()

    async def run(self, node: NodeSpec | str, command: str, *, timeout: float | None = None,
                  check: bool = False, input: str | None = None) -> CommandResult:
        """Run ``command`` through the node's shell; return status, output and duration."""
        spec = self.spec(node)
        limit = timeout or spec.command_timeout
        conn = await self.connection(spec)
        t0 = time.monotonic()
        try:
            res = await asyncio.wait_for(conn.run(command, input=input, check=False), limit)
        except TimeoutError:
            raise CommandTimeout(spec.name, f"`{command}` did not finish within {limit:g} s") from None
        except (OSError, asyncssh.Error) as e:
            self._conns.pop(spec.name, None)
            raise map_ssh_error(spec, e) from None
        out = CommandResult(spec.name, command, res.exit_status, _text(res.stdout), _text(res.stderr),
                            time.monotonic() - t0)
        if check and not out.ok:
            raise CommandFailed(spec.name, command, out.exit_status, out.stderr or out.stdout)
        return out

    async def start_detached(self, node: NodeSpec | str, command: str, log: str) -> int:
        """Start ``command`` detached (it outlives the session), output appended to ``log``; return its pid.

        Appended, never truncated: the log of a daemon that died says why, and a healing restart keeps it.
        """
        inner = f"exec {command}"
        # `;` not `&&`: `a && b &` would background the whole chain in a subshell that keeps the channel open
        wrapped = (f"mkdir -p {shlex.quote(os.path.dirname(log) or '.')} || exit 1; "
                   f"nohup setsid sh -c {shlex.quote(inner)} >> {shlex.quote(log)} 2>&1 < /dev/null & echo $!")
        res = await self.run(node, wrapped, check=True)
        try:
            return int(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise CommandFailed(self.spec(node).name, command, res.exit_status,
                                f"expected a pid, got {res.stdout!r}") from None

    async def kill(self, node: NodeSpec | str, pid: int, signal: str = "TERM", wait: float = 10.0,
                   escalate: float | None = None) -> bool:
        """Send ``signal`` to ``pid`` and wait until it is gone; True if it was running.

        With ``escalate``: a process still there after that many seconds is killed with SIGKILL, with its whole
        process group (a command started over SSH leads its own group: its children, such as a tcpdump under a
        watchdog shell, go with it), and waited for until ``wait``."""
        p, ticks = int(pid), int(wait * 10)
        if escalate is None:
            cmd = (f"kill -{signal} {p} 2>/dev/null || exit 3; "
                   f"for i in $(seq {ticks}); do kill -0 {p} 2>/dev/null || exit 0; sleep 0.1; done; exit 4")
        else:
            first = max(1, min(int(escalate * 10), ticks))
            cmd = (f"kill -{signal} {p} 2>/dev/null || exit 3; "
                   f"for i in $(seq {first}); do kill -0 {p} 2>/dev/null || exit 0; sleep 0.1; done; "
                   f"kill -KILL -{p} 2>/dev/null; kill -KILL {p} 2>/dev/null; "
                   f"for i in $(seq {max(ticks - first, 10)}); do kill -0 {p} 2>/dev/null || exit 0; sleep 0.1; done; "
                   "exit 4")
        res = await self.run(node, cmd, timeout=wait + 5)
        if res.exit_status == 4:
            raise CommandFailed(self.spec(node).name, f"kill -{signal} {pid}", 4, f"pid {pid} still running after {wait:g} s")
        return res.exit_status == 0

    async def stream(self, node: NodeSpec | str, command: str) -> RemoteStream:
        """Start ``command`` with stdout as raw bytes; the remote pid is read from stderr first."""
        spec = self.spec(node)
        conn = await self.connection(spec)
        try:
            proc = await conn.create_process(f"echo $$ >&2; exec {command}", encoding=None)
            line = await asyncio.wait_for(proc.stderr.readline(), spec.command_timeout)
        except TimeoutError:
            raise CommandTimeout(spec.name, f"`{command}` did not start within {spec.command_timeout:g} s") from None
        except (OSError, asyncssh.Error) as e:
            raise map_ssh_error(spec, e) from None
        try:
            pid = int(line.strip())
        except ValueError:
            raise CommandFailed(spec.name, command, None, f"could not read its pid (got {line!r})") from None
        return RemoteStream(self, spec, proc, pid)

    async def forward_unix(self, node: NodeSpec | str, remote_path: str) -> str:
        """Forward a fresh local unix socket to ``remote_path`` on the node; return the local path."""
        spec = self.spec(node)
        conn = await self.connection(spec)
        if self._forward_dir is None:
            self._forward_dir = tempfile.mkdtemp(prefix="overlay-tui-fwd-")
        local = str(Path(self._forward_dir) / f"{spec.name}-{abs(hash(remote_path)) & 0xffff:x}.sock")
        self.close_forward(local)                 # a forward being replaced: stop its listener first
        if os.path.exists(local):
            os.unlink(local)
        try:
            self._listeners[local] = await conn.forward_local_path(local, remote_path)
        except (OSError, asyncssh.Error) as e:
            raise map_ssh_error(spec, e) from None
        return local

    async def forward_tcp(self, node: NodeSpec | str, host: str, port: int) -> int:
        """Forward a fresh 127.0.0.1 port to ``host:port`` as the node sees it; return the local port.

        Used to reach a node's etcd client URL (plain HTTP, v2 keys) when it is not routable from here.
        """
        spec = self.spec(node)
        conn = await self.connection(spec)
        try:
            listener = await conn.forward_local_port("127.0.0.1", 0, host, int(port))
        except (OSError, asyncssh.Error) as e:
            raise map_ssh_error(spec, e) from None
        self._listeners[listener.get_port()] = listener
        return listener.get_port()

    def close_forward(self, local: str | int) -> None:
        """Stop the listener of a forward made here (a local socket path or port); unknown: nothing."""
        listener = self._listeners.pop(local, None)
        if listener is not None:
            listener.close()

    @property
    def forwards(self) -> int:
        """How many forward listeners are open (the soak bench watches it stay flat)."""
        return len(self._listeners)

    async def close(self) -> None:
        for local in list(self._listeners):
            self.close_forward(local)
        conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()
        for c in conns:
            try:
                await asyncio.wait_for(c.wait_closed(), 2)
            except (TimeoutError, OSError, asyncssh.Error):
                pass
        if self._forward_dir:
            for f in Path(self._forward_dir).glob("*"):
                f.unlink(missing_ok=True)
            os.rmdir(self._forward_dir)
            self._forward_dir = None


def _text(v: object) -> str:
    if v is None:
        return ""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
