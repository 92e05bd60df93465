"""Keys of the console server: its own host key (made once, kept 0600) and the access list of client keys."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncssh

from core.errors import UsageError


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key at ``path``; on first use generate an ed25519 key there with mode 0600."""
    path = path.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="overlay-tui serve")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another server made it a moment ago: use theirs
            return load_or_create_host_key(path)
        except OSError as e:
            raise UsageError(f"--host-key {path}: cannot create the host key ({e.strerror})") from None
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        return key
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UsageError(f"--host-key {path}: the private host key is readable by others (mode {mode:04o}); "
                         f"run `chmod 600 {path}`")
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as e:
        raise UsageError(f"--host-key {path}: not a readable OpenSSH private key ({e})") from None


class AccessList:
    """The authorized keys file that says who may open a console; re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self._mtime: float | None = None
        self._keys: asyncssh.SSHAuthorizedKeys | None = None
        self.count = 0

    def check(self) -> int:
        """Load the file now; raise :class:`UsageError` naming the file if it is missing, bad or empty."""
        if not self.path.is_file():
            raise UsageError(f"--authorized-keys {self.path}: no such file; give the access list of operator keys "
                             "with --authorized-keys FILE (OpenSSH authorized_keys format)")
        self._reload()
        if self.count == 0:
            raise UsageError(f"--authorized-keys {self.path}: the file lists no keys, so nobody could connect")
        return self.count

    def admits(self, key: asyncssh.SSHKey, client_addr: str) -> bool:
        """Whether ``key`` (offered from ``client_addr``) is on the list; an unreadable list admits nobody."""
        try:
            if self.path.stat().st_mtime != self._mtime:
                self._reload()
        except (OSError, UsageError):
            return False
        assert self._keys is not None
        return self._keys.validate(key, client_addr, client_addr) is not None

    def _reload(self) -> None:
        mtime = self.path.stat().st_mtime
        try:
            text = self.path.read_text(encoding="utf-8")
            count = sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
            keys = asyncssh.import_authorized_keys(text) if count else asyncssh.SSHAuthorizedKeys()
        except (OSError, UnicodeDecodeError, ValueError, asyncssh.KeyImportError) as e:
            raise UsageError(f"--authorized-keys {self.path}: cannot read the keys ({e})") from None
        self._keys, self._mtime, self.count = keys, mtime, count
