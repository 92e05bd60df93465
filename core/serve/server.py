"""`overlay-tui serve`: an SSH server that gives every operator who connects their own console.

Each session with a terminal runs the console (``python -m tui.launcher``) as a separate process
on its own pty (see :mod:`core.serve.session`), so sessions cannot disturb each other or the
server. Who may connect is decided in :mod:`core.serve.auth`; keys live in :mod:`core.serve.keys`.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from core.errors import UsageError
from core.paths import state_dir
from core.serve.accesslog import install_loop_error_gate, setup_logging  # noqa: F401 - cli/serve.py imports it here
from core.serve.auth import ConsoleSSHServer, StartupGate
from core.serve.keys import AccessList, load_or_create_host_key
from core.serve.session import SessionSlots
from core.serve.spare import ConsoleLauncher

log = logging.getLogger("overlay_tui.serve")

DEFAULT_LISTEN = "127.0.0.1:2222"
LOGIN_TIMEOUT = 15   # seconds a connection may take to authenticate

#: Only modern algorithms: no SHA-1 (no ssh-rsa signatures, no hmac-sha1, no diffie-hellman-*-sha1), no DSA.
ALGORITHMS: dict[str, list[str]] = {
    "kex_algs": ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
                 "ecdh-sha2-nistp521", "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512",
                 "diffie-hellman-group14-sha256"],
    "encryption_algs": ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
                        "aes256-ctr", "aes192-ctr", "aes128-ctr"],
    "mac_algs": ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com",
                 "hmac-sha2-256", "hmac-sha2-512", "umac-128@openssh.com"],
    "signature_algs": ["ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                       "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256"],
    # the host key's own algorithms follow from signature_algs; a DSA host key is refused at load
}


@dataclass
class ServeConfig:
    """Everything `serve` needs, already checked by :func:`prepare` except the listen socket."""

    host: str
    port: int
    authorized_keys: Path
    host_key: Path
    max_sessions: int = 8
    console_argv: list[str] = field(default_factory=list)
    #: the console's own options when ``console_argv`` is the real console (enables warm spares)
    console_options: list[str] | None = None
    warm_spare: bool = True
    log_file: Path | None = None
    #: consoles one key may hold at once (0: only ``max_sessions`` bounds them)
    max_sessions_per_key: int = 4
    #: seconds without a key press before a console is hung up (0: never)
    idle_timeout: float = 3600.0
    #: address space of each console process, bytes (0: no limit)
    console_memory: int = 2048 * 1024 * 1024
    #: connections not yet authenticated: in all, and from one address (sshd's MaxStartups)
    max_startups: int = 32
    max_startups_per_addr: int = 8


def serve_dir() -> Path:
    return state_dir() / "serve"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); a missing host means 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text}: the port must be a number from 0 to 65535 (e.g. 127.0.0.1:2222)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_argv(options: list[str]) -> list[str]:
    """The command each session runs: the console with ``options``.

    ``-P`` keeps the server's working directory off ``sys.path`` (a ``core/`` or ``tui/`` there must not
    shadow ours); :func:`core.serve.pty.console_env` puts this package's own root on PYTHONPATH instead.
    """
    return [sys.executable, "-P", "-m", "tui.launcher", *options]


def console_options(inventory: str | None, read_only: bool, replay_state: str | None) -> list[str]:
    """The console's options: the server's inventory and modes."""
    opts: list[str] = []
    if inventory:
        opts += ["--inventory", inventory]
    if read_only:
        opts.append("--read-only")
    if replay_state:
        opts += ["--replay-state", replay_state]
    return opts


async def run_server(config: ServeConfig, ready: asyncio.Future | None = None) -> int:
    """Serve until SIGINT/SIGTERM; then hang up every console and return 0."""
    access = AccessList(config.authorized_keys)
    nkeys = access.check()
    host_key = load_or_create_host_key(config.host_key)
    slots = SessionSlots(config.max_sessions, config.max_sessions_per_key)
    launcher = ConsoleLauncher(config.console_argv, config.console_options, config.warm_spare, config.console_memory)
    gate = StartupGate(config.max_startups, config.max_startups_per_addr)
    install_loop_error_gate(asyncio.get_running_loop(), gate.errors)
    try:
        acceptor = await asyncssh.listen(
            config.host, config.port, server_host_keys=[host_key],
            server_factory=lambda: ConsoleSSHServer(access, slots, launcher, gate, config.idle_timeout),
            encoding=None, line_editor=False, agent_forwarding=False, x11_forwarding=False,
            allow_scp=False, login_timeout=LOGIN_TIMEOUT, keepalive_interval=30, reuse_address=True,
            backlog=128, **ALGORITHMS)
    except OSError as e:
        raise UsageError(f"--listen {config.host}:{config.port}: cannot listen there ({e.strerror or e})") from None
    port = acceptor.sockets[0].getsockname()[1]
    if not is_loopback(config.host):
        log.warning("listening on %s, which is not a loopback address: reachable from other machines", config.host)
    print(f"overlay-tui serve: listening on {config.host}:{port}\n"
          f"  host key {host_key.get_fingerprint('sha256')} ({config.host_key})\n"
          f"  access list {config.authorized_keys} ({nkeys} keys); at most {config.max_sessions} sessions\n"
          f"  connect with: ssh -t -p {port} {config.host}", flush=True)
    launcher.prepare()
    if ready is not None:
        ready.set_result(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        acceptor.close()
        await asyncio.gather(launcher.close(), _hang_up_all(slots))
    log.info("stopped")
    return 0


async def _hang_up_all(slots: SessionSlots) -> None:
    await asyncio.gather(*(s.hang_up() for s in list(slots.active)), return_exceptions=True)
