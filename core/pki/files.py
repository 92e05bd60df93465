"""Private files on the operator's machine: created 0600 in 0700 dirs, never through a symlink.

A file is written to a fresh temp name opened with ``O_CREAT | O_EXCL | O_NOFOLLOW``, fsynced, then
renamed over the final name (a rename replaces a symlink there, never follows it). Directories are
made 0700 and refused when they are a symlink or owned by someone else.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from core.errors import OverlayError


class PKIFileError(OverlayError):
    """A PKI file or directory is unsafe to use (a symlink, someone else's, too open)."""


def ensure_private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a 0700 directory of ours; refuse a symlink at ``path``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise PKIFileError(f"{path} is a symlink; the PKI directory must be a real directory: remove the link")
    if not stat.S_ISDIR(st.st_mode):
        raise PKIFileError(f"{path} exists and is not a directory; move it away")
    if st.st_uid != os.geteuid():
        raise PKIFileError(f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); fix its owner")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; the directory must be ours (see above)."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode, follow_symlinks=False)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_nofollow(path: Path) -> bytes | None:
    """The bytes of a regular file at ``path``; None when missing; a symlink is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if os.path.islink(path):
            raise PKIFileError(f"{path} is a symlink; PKI files are never read through links: remove it") from None
        raise PKIFileError(f"cannot read {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise PKIFileError(f"{path} is not a regular file")
        return fh.read()
