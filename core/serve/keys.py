"""Keys of the console server: its own host key (made once, kept 0600) and the access list of client keys.

The access list is an OpenSSH authorized_keys file, checked like sshd's StrictModes (owned by us or root, not
group/world-writable, nor its directory) and re-read whenever its inode, size, mtime or ctime change. Options
are honoured the way sshd does for a console: ``from=`` limits the client address, ``expiry-time=`` ends a
key, and ``restrict`` (without ``pty``), ``no-pty`` or ``command=`` leave a key without a console (a session
with it gets one line saying why). Options that overlay-tui cannot enforce (``cert-authority``, ``principals``,
``tunnel``, ``verify-required``, ...) and DSA keys make that one key refused at load with a line naming it.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from core.errors import UsageError

log = logging.getLogger("overlay_tui.serve")

#: options a console session honours (forwarding is always refused, so its options change nothing)
ENFORCED = {"from", "expiry-time", "restrict", "pty", "no-pty", "command", "environment",
            "no-port-forwarding", "no-agent-forwarding", "no-X11-forwarding", "no-user-rc", "port-forwarding",
            "agent-forwarding", "X11-forwarding", "user-rc", "permitopen", "permitlisten"}
REFUSED_KEY_TYPES = {"ssh-dss"}
MIN_RSA_BITS = 2048


def _refuse_link(path: Path, what: str) -> None:
    if path.is_symlink():
        raise UsageError(f"{what} {path}: is a symbolic link; give the real file (a link could be pointed "
                         "elsewhere by whoever owns its directory)")


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key at ``path``; on first use generate an ed25519 key there with mode 0600."""
    path = path.expanduser()
    _refuse_link(path, "--host-key")
    if not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="overlay-tui serve")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # another server made it a moment ago: use theirs (once)
            _refuse_link(path, "--host-key")
            return _read_host_key(path)
        except OSError as e:
            raise UsageError(f"--host-key {path}: cannot create the host key ({e.strerror})") from None
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        return key
    return _read_host_key(path)


def _read_host_key(path: Path) -> asyncssh.SSHKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise UsageError(f"--host-key {path}: cannot read the host key ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise UsageError(f"--host-key {path}: the private host key is readable by others (mode {mode:04o}); "
                             f"run `chmod 600 {path}`")
        data = f.read()
    try:
        key = asyncssh.import_private_key(data)
    except (ValueError, asyncssh.KeyImportError) as e:
        raise UsageError(f"--host-key {path}: not a readable OpenSSH private key ({e})") from None
    if key.algorithm.decode() in REFUSED_KEY_TYPES:
        raise UsageError(f"--host-key {path}: a DSA host key is not accepted; remove it and a new ed25519 key is made")
    return key


def strict_mode_problem(path: Path, what: str) -> str | None:
    """sshd's StrictModes for a file that grants access: why ``path`` must not be trusted, or None."""
    me = os.geteuid()
    try:
        st = os.stat(path)
    except OSError as e:
        return f"{what} {path}: cannot read it ({e.strerror})"
    if st.st_uid not in (me, 0):
        return f"{what} {path}: owned by uid {st.st_uid}, not by this server's user or root"
    if st.st_mode & 0o022:
        return (f"{what} {path}: is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); anyone "
                f"in them could add a key: run `chmod go-w {path}`")
    parent = path.resolve().parent
    try:
        pst = os.stat(parent)
    except OSError:
        return None
    if pst.st_uid not in (me, 0) or (pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX):
        return (f"{what} {path}: its directory {parent} is writable by others or owned by someone else "
                f"(mode {stat.S_IMODE(pst.st_mode):04o}), so the file could be replaced")
    return None


@dataclass(frozen=True)
class KeyGrant:
    """What an admitted key may do, from its authorized_keys options."""

    console: bool                # False: restrict/no-pty/command= leave it without a console
    why_not: str = ""            # the sentence the session gets when ``console`` is False
    expires: float | None = None


def parse_expiry(value: str) -> float:
    """OpenSSH ``expiry-time``: YYYYMMDD[HHMM[SS]], local time, or UTC with a trailing Z; epoch seconds."""
    m = re.fullmatch(r"(\d{8})(\d{4})?(\d{2})?(Z?)", value.strip().strip('"'))
    if not m:
        raise ValueError(f"expiry-time {value!r} is not YYYYMMDD[HHMM[SS]][Z]")
    text = m.group(1) + (m.group(2) or "0000") + (m.group(3) or "00")
    t = datetime.strptime(text, "%Y%m%d%H%M%S")
    return (t.replace(tzinfo=UTC) if m.group(4) else t).timestamp()   # naive: local time, as sshd reads it


def grant_of(options: dict) -> KeyGrant:
    expires = None
    if "expiry-time" in options:
        values = options["expiry-time"]
        expires = min(parse_expiry(v) for v in (values if isinstance(values, list) else [values]))
    if "command" in options:
        return KeyGrant(False, "this key is limited to a command by its authorized_keys entry (command=); "
                               "overlay-tui serve runs only the console", expires)
    if "no-pty" in options or ("restrict" in options and "pty" not in options):
        opt = "no-pty" if "no-pty" in options else "restrict"
        return KeyGrant(False, f"this key may not have a terminal ({opt} in its authorized_keys entry), and the "
                               "console needs one", expires)
    return KeyGrant(True, "", expires)


class AccessList:
    """The authorized keys file that says who may open a console; re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self._stamp: tuple[int, int, int, int] | None = None
        self._entries: list[tuple[asyncssh.SSHAuthorizedKeys, KeyGrant]] = []
        self._broken: str | None = None
        self.count = 0

    def check(self) -> int:
        """Load the file now; raise :class:`UsageError` naming the file if it is missing, unsafe, bad or empty."""
        if not self.path.is_file():
            raise UsageError(f"--authorized-keys {self.path}: no such file; give the access list of operator keys "
                             "with --authorized-keys FILE (OpenSSH authorized_keys format)")
        self._reload()
        if self.count == 0:
            raise UsageError(f"--authorized-keys {self.path}: the file lists no usable keys, so nobody could connect")
        return self.count

    def admits(self, key: asyncssh.SSHKey, client_addr: str) -> KeyGrant | None:
        """What ``key`` (offered from ``client_addr``) may do, or None: not listed, expired, or the list is unsafe."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if stamp != self._stamp:
                self._reload()
        except (OSError, UsageError) as e:
            problem = str(e) if isinstance(e, UsageError) else f"--authorized-keys {self.path}: {e.strerror}"
            if problem != self._broken:
                log.error("the access list cannot be used, nobody is admitted until it is fixed: %s", problem)
                self._broken = problem
            return None
        self._broken = None
        for keys, grant in self._entries:
            if keys.validate(key, client_addr, client_addr) is not None:
                if grant.expires is not None and time.time() >= grant.expires:
                    return KeyGrant(False, "expired")
                return grant
        return None

    def _reload(self) -> None:
        problem = strict_mode_problem(self.path, "--authorized-keys")
        if problem:
            raise UsageError(problem)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                text = f.read(1 << 20).decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--authorized-keys {self.path}: cannot read the keys ({e})") from None
        entries = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            entry = self._entry(n, line)
            if entry is not None:
                entries.append(entry)
        self._entries, self.count = entries, len(entries)
        self._stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _entry(self, n: int, line: str) -> tuple[asyncssh.SSHAuthorizedKeys, KeyGrant] | None:
        where = f"{self.path} line {n}"
        try:
            keys = asyncssh.import_authorized_keys(line)
            parsed = keys._user_entries + keys._ca_entries + keys._x509_entries   # one line: one entry
            options, key = dict(parsed[0].options), parsed[0].key
        except (ValueError, asyncssh.KeyImportError, IndexError, AttributeError) as e:
            log.warning("access list %s: not a key this server reads (%s); skipped", where, e)
            return None
        unknown = sorted(set(options) - ENFORCED)
        if unknown or key is None:
            log.warning("access list %s: refused: option %s cannot be enforced by overlay-tui serve "
                        "(remove it, or give this operator another key)", where, ", ".join(unknown) or "x509")
            return None
        if key.algorithm.decode() in REFUSED_KEY_TYPES:
            log.warning("access list %s: refused: DSA keys are not accepted (use ed25519)", where)
            return None
        if key.algorithm == b"ssh-rsa" and _rsa_bits(key) < MIN_RSA_BITS:
            log.warning("access list %s: refused: RSA keys need %d bits or more", where, MIN_RSA_BITS)
            return None
        try:
            grant = grant_of(options)
        except ValueError as e:
            log.warning("access list %s: refused: %s", where, e)
            return None
        return keys, grant


def _rsa_bits(key: asyncssh.SSHKey) -> int:
    pyca = getattr(key, "pyca_key", None) or getattr(getattr(key, "_key", None), "pyca_key", None)
    size = getattr(pyca, "key_size", None)
    return int(size) if size else MIN_RSA_BITS
