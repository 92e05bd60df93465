"""Who may connect to the console server: public keys on the access list, nothing else.

No passwords, no keyboard-interactive, no host-based or anonymous access, no forwarding of any kind. A
connection that has not authenticated counts against :class:`StartupGate` (a cap for the whole server and one
per client address, like sshd's MaxStartups) and may offer at most :data:`MAX_AUTH_TRIES` keys that fail.
Every refused attempt is logged with the peer address, the user name given and the key's fingerprint;
admitted ones are logged too (see :mod:`core.serve.accesslog`: JSON lines, values escaped and cut short).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncssh

from core.serve.accesslog import ErrorGate, fields
from core.serve.keys import AccessList, KeyGrant
from core.serve.session import ConsoleSession, SessionSlots
from core.serve.spare import ConsoleLauncher

log = logging.getLogger("overlay_tui.serve")
MAX_AUTH_TRIES = 6


@dataclass
class StartupGate:
    """Caps on connections that have not authenticated yet: ``total`` for the server, ``per_addr`` per address."""

    total: int = 32
    per_addr: int = 8
    pending: dict[str, int] = field(default_factory=dict)
    errors: ErrorGate = field(default_factory=ErrorGate)

    def enter(self, addr: str) -> bool:
        if sum(self.pending.values()) >= self.total or self.pending.get(addr, 0) >= self.per_addr:
            return False
        self.pending[addr] = self.pending.get(addr, 0) + 1
        return True

    def leave(self, addr: str) -> None:
        n = self.pending.get(addr, 0) - 1
        if n > 0:
            self.pending[addr] = n
        else:
            self.pending.pop(addr, None)


class ConsoleSSHServer(asyncssh.SSHServer):
    """One SSH connection: authenticates against the access list and opens a :class:`ConsoleSession` per channel."""

    def __init__(self, access: AccessList, slots: SessionSlots, launcher: ConsoleLauncher, gate: StartupGate,
                 idle_timeout: float = 0) -> None:
        self._access, self._slots, self._launcher, self._gate = access, slots, launcher, gate
        self._idle_timeout = idle_timeout
        self._conn: asyncssh.SSHServerConnection | None = None
        self._addr, self._peer = "?", "?"
        self._user: str | None = None
        self._refused: list[str] = []
        self._failures = 0
        self._accepted: str | None = None
        self._grant = KeyGrant(False, "not authenticated")
        self._admitted = False
        self._gated = False
        self._turned_away = False      # refused by the gate: logged there (rate-limited), not again here

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self._addr, self._peer = str(peer[0]), f"{peer[0]}:{peer[1]}"
        if self._gate.enter(self._addr):
            self._gated = True
            return
        self._turned_away = True
        dropped = self._gate.errors.allow(f"startups {self._addr}")
        if dropped is not None:
            log.warning("REFUSED %s: too many connections not yet authenticated (at most %d, %d per address)%s",
                        self._peer, self._gate.total, self._gate.per_addr,
                        f"; {dropped} more refused in the last {self._gate.errors.every:.0f} s" if dropped else "",
                        extra=fields(event="refused", peer=self._peer, reason="startups"))
        conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ungate()
        if self._admitted:
            log.info("%s: disconnected", self._who(), extra=fields(event="disconnected", peer=self._peer))
            return
        if self._turned_away:
            return
        reason = "no key on the access list was offered (only public keys are accepted)"
        if self._failures >= MAX_AUTH_TRIES:
            reason = f"too many keys refused (at most {MAX_AUTH_TRIES})"
        elif self._user is None:
            reason = "disconnected before authenticating"
        if exc is not None and not isinstance(exc, asyncssh.ConnectionLost):
            reason += f" ({exc})"
        keys = ", ".join(self._refused) or "none"
        log.warning("REFUSED peer=%s user=%s keys=%s reason=%s", self._peer, self._user, keys, reason,
                    extra=fields(event="refused", peer=self._peer, user=self._user, keys=keys, reason=reason))

    def begin_auth(self, username: str) -> bool:
        self._user = username
        return True  # always authenticate: there is no anonymous access

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        if self._failures >= MAX_AUTH_TRIES:
            return False
        grant = self._access.admits(key, self._addr)
        if grant is not None and grant.why_not != "expired":
            self._accepted, self._grant = fingerprint, grant
            return True
        why = "its expiry-time has passed" if grant is not None else f"not on the access list {self._access.path}"
        self._failures += 1
        if fingerprint not in self._refused:
            self._refused.append(fingerprint)
            log.warning("REFUSED KEY peer=%s user=%s key=%s reason=%s", self._peer, username, fingerprint, why,
                        extra=fields(event="refused-key", peer=self._peer, user=username, key=fingerprint))
        if self._failures >= MAX_AUTH_TRIES and self._conn is not None:
            self._conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                  f"too many authentication failures (at most {MAX_AUTH_TRIES})")
        return False

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def auth_completed(self) -> None:
        self._admitted = True
        self._ungate()
        log.info("ADMITTED peer=%s user=%s key=%s", self._peer, self._user, self._accepted,
                 extra=fields(event="admitted", peer=self._peer, user=self._user, key=self._accepted))

    def session_requested(self) -> ConsoleSession:
        return ConsoleSession(self._launcher, self._slots, self._who(), key=self._accepted or "?", grant=self._grant,
                              idle_timeout=self._idle_timeout)

    def _ungate(self) -> None:
        if self._gated:
            self._gated = False
            self._gate.leave(self._addr)

    def _who(self) -> str:
        return f"{self._user}@{self._peer}"
