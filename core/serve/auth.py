"""Who may connect to the console server: public keys on the access list, nothing else.

No passwords, no keyboard-interactive, no host-based or anonymous access, no forwarding of any
kind. Every refused attempt is logged with the peer address, the user name given and the key's
fingerprint; admitted ones are logged too.
"""
from __future__ import annotations

import logging

import asyncssh

from core.serve.keys import AccessList
from core.serve.session import ConsoleSession, SessionSlots
from core.serve.spare import ConsoleLauncher

log = logging.getLogger("overlay_tui.serve")


class ConsoleSSHServer(asyncssh.SSHServer):
    """One SSH connection: authenticates against the access list and opens a :class:`ConsoleSession` per channel."""

    def __init__(self, access: AccessList, slots: SessionSlots, launcher: ConsoleLauncher) -> None:
        self._access, self._slots, self._launcher = access, slots, launcher
        self._peer = "?"
        self._user: str | None = None
        self._refused: list[str] = []
        self._accepted: str | None = None
        self._admitted = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("?", 0)
        self._peer = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            log.info("%s: disconnected", self._who())
            return
        reason = "no key on the access list was offered (only public keys are accepted)"
        if self._user is None:
            reason = "disconnected before authenticating"
        if exc is not None and not isinstance(exc, asyncssh.ConnectionLost):
            reason += f" ({exc})"
        keys = ", ".join(self._refused) or "none"
        log.warning("REFUSED peer=%s user=%s keys=%s reason=%s", self._peer, self._user, keys, reason)

    def begin_auth(self, username: str) -> bool:
        self._user = username
        return True  # always authenticate: there is no anonymous access

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        if self._access.admits(key, self._peer.rsplit(":", 1)[0]):
            self._accepted = fingerprint
            return True
        if fingerprint not in self._refused:
            self._refused.append(fingerprint)
            log.warning("REFUSED KEY peer=%s user=%s key=%s reason=not on the access list %s",
                        self._peer, username, fingerprint, self._access.path)
        return False

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def auth_completed(self) -> None:
        self._admitted = True
        log.info("ADMITTED peer=%s user=%s key=%s", self._peer, self._user, self._accepted)

    def session_requested(self) -> ConsoleSession:
        return ConsoleSession(self._launcher, self._slots, self._who())

    def _who(self) -> str:
        return f"{self._user}@{self._peer}"
