"""Drive `overlay-tui serve` from the outside, as an operator would (used by tests/test_serve.py and bench/serve.py).

- :class:`ServeProcess`: the server as a subprocess on a free loopback port, with its own host key and log.
- :class:`SSHTerminal`: the real OpenSSH client (``ssh -tt``) on a pty of its own, so window resizes reach it
  as SIGWINCH exactly as in a terminal emulator; output is read until a marker appears (never fixed sleeps).
- :data:`STANDIN`: a tiny console stand-in that reports its window size, echoes keys and can crash or hang.
"""
from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERLAY_TUI = str(Path(sys.executable).parent / "overlay-tui")  # the installed entry point, as operators run it
ANSI_RE = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>]")

# The stand-in console: prints PID/SIZE/KEY lines; q quits 0, x exits 3, c crashes (SIGSEGV), h hangs
# (ignoring SIGHUP), g starts a grandchild that lingers in the same process group, f floods output forever.
STANDIN = r'''
import fcntl, os, signal, struct, subprocess, sys, termios, tty
def size():
    r, c, _, _ = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    return c, r
def show(*_):
    os.write(1, b"SIZE %dx%d TERM=%s\r\n" % (*size(), os.environ.get("TERM", "").encode()))
signal.signal(signal.SIGWINCH, show)
tty.setraw(0, termios.TCSANOW)
os.write(1, b"PID %d READY\r\n" % os.getpid())
show()
while True:
    b = os.read(0, 1)
    if not b or b == b"q": sys.exit(0)
    if b == b"x": sys.exit(3)
    if b == b"c": os.kill(os.getpid(), signal.SIGSEGV)
    if b == b"h":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.write(1, b"HANGING\r\n")
        while True: signal.pause()
    if b == b"f":
        line = b"FLOOD " + b"x" * 4000 + b"\r\n"
        while True: os.write(1, line)
    if b == b"g":
        p = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.write(1, b"GRANDCHILD %d\r\n" % p.pid)
        continue
    os.write(1, b"KEY %r\r\n" % b)
'''


def make_key(path: Path) -> Path:
    """A fresh ed25519 key pair at ``path`` (and ``path``.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def fingerprint(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def console_pids(log: Path) -> list[int]:
    """Pids of the consoles the server started, in order, from its access log."""
    return [int(p) for p in re.findall(r"console started \(pid (\d+)", log.read_text())]


def children_of(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def window_size_of(pid: int) -> tuple[int, int]:
    """(cols, rows) of the terminal on ``pid``'s stdin, as the process itself would read it."""
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY)
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    finally:
        os.close(fd)
    return cols, rows


def wait_until(check, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class ServeProcess:
    """`overlay-tui serve` running as a subprocess; use as a context manager."""

    workdir: Path
    authorized_keys: Path
    args: tuple[str, ...] = ()
    cwd: Path = ROOT
    port: int = 0
    host_fingerprint: str = ""

    def __post_init__(self) -> None:
        self.host_key = self.workdir / "host_key"
        self.log = self.workdir / "access.log"
        self.stderr_path = self.workdir / "serve.stderr"

    def __enter__(self) -> ServeProcess:
        argv = [OVERLAY_TUI, "serve", "--listen", "127.0.0.1:0",
                "--authorized-keys", str(self.authorized_keys), "--host-key", str(self.host_key),
                "--log", str(self.log), *self.args]
        # PYTHONPATH: the entry point would otherwise import the editable install's tree, not the one under test
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(argv, cwd=self.cwd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "wb"), text=True, env=env)
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if m := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                self.port = int(m.group(1))
            if m := re.search(r"host key (SHA256:\S+)", line):
                self.host_fingerprint = m.group(1)
            if line.lstrip().startswith("connect with:"):
                break
        if not self.port:
            self.proc.wait(10)
            raise AssertionError(f"serve did not start: {''.join(lines)}{self.stderr_path.read_text()}")
        self.known_hosts = self.workdir / f"known_hosts_{self.port}"
        pub = subprocess.run(["ssh-keygen", "-y", "-f", str(self.host_key)], capture_output=True, text=True,
                             check=True).stdout.strip()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub}\n")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_status = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_status = self.proc.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def ssh_argv(self, key: Path, *extra: str, command: tuple[str, ...] = ()) -> list[str]:
        """An OpenSSH client command for this server that verifies its host key strictly."""
        return ["ssh", "-p", str(self.port), "-i", str(key), "-F", "/dev/null", "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "LogLevel=ERROR", *extra, "127.0.0.1", *command]


class SSHTerminal:
    """A command (the OpenSSH client) on a pty that it takes as its controlling terminal, like a real terminal."""

    def __init__(self, argv: list[str], cols: int = 100, rows: int = 30, term: str = "xterm-256color") -> None:
        self.master, slave = os.openpty()
        self.resize(cols, rows)
        env = {**os.environ, "TERM": term}
        env.pop("SSH_AUTH_SOCK", None)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.raw = bytearray()
        self.mark = 0  # expect() looks only at output after this offset

    def resize(self, cols: int, rows: int) -> None:
        self.mark = len(getattr(self, "raw", b""))
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes | str) -> None:
        self.mark = len(self.raw)
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not r:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            return False
        self.raw += chunk
        return True

    def text(self, start: int = 0) -> str:
        """Output since ``start`` with terminal escape sequences removed."""
        return ANSI_RE.sub(b"", bytes(self.raw[start:])).decode("utf-8", "replace")

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match:
        """Read until ``pattern`` (a regex) appears in the text since the last send or resize; fail after ``timeout``."""
        return self._expect(lambda: re.search(pattern, self.text(self.mark)), pattern, timeout)

    def expect_raw(self, pattern: bytes, timeout: float = 15.0) -> re.Match:
        """Like :meth:`expect` on the raw bytes, escape sequences included."""
        return self._expect(lambda: re.search(pattern, bytes(self.raw[self.mark:])), pattern, timeout)

    def _expect(self, search, pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            m = search()
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                m = search()
                if m:
                    return m
                tail = self.text(max(0, len(self.raw) - 2000))
                raise AssertionError(f"{pattern!r} not seen in {timeout}s; output tail: {tail!r}")

    def wait_until(self, check, timeout: float = 15.0, what: str = "condition") -> None:
        """Like :func:`wait_until`, reading the terminal all the while: a console whose output nobody reads
        blocks on its next write (the pty, then the SSH channel's window, fill up) and stops taking keys."""
        deadline = time.monotonic() + timeout
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self.text(max(0, len(self.raw) - 2000))
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; output tail: {tail!r}")
            if not self._read(min(left, 0.05)):
                if not check():
                    raise AssertionError(f"the client exited while waiting for {what}")
                return

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Drain output until the client exits; return its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if not self._read(0.1):
                break
        try:
            return self.proc.wait(max(0.1, deadline - time.monotonic()))
        finally:
            while select.select([self.master], [], [], 0)[0] and self._read(0):
                pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)

    def __enter__(self) -> SSHTerminal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
