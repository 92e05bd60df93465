"""Files overlay-tui writes for the operator: private, never through a link, never over a file unasked.

Every path a command writes (``capture --write``, ``record --out``, a pcap saved from the console, the serve
access log) is opened through :func:`create_private`:

- the final component is never followed as a symbolic link (``O_NOFOLLOW``; a link there is refused);
- a new file is created with ``O_EXCL`` and mode 0600, so an existing file is never truncated;
- ``replace=True`` (after the operator said yes) writes a temporary file in the same directory and renames it
  over the old one when closed, so the old content stays whole until the new one is complete.

:class:`SaveArea` decides where a name typed in the console may be written: anywhere the operator chooses in a
local console; only a bare file name, inside a directory of its own per session, in a served console; nowhere in
a read-only console. The service enforces it (the console's modal only asks the same questions first).
"""
from __future__ import annotations

import getpass
import os
import re
import shlex
import socket
import stat
from pathlib import Path
from typing import BinaryIO

from core.access import WriteGuard
from core.errors import UsageError
from core.model import SaveTarget

#: set by `overlay-tui serve` in each console's environment: the session id (files go to its own directory)
SERVED_SESSION_ENV = "OVERLAY_TUI_SERVED_SESSION"
_SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_NAME = 200


class FileWriteError(UsageError):
    """A path cannot be written as asked (exists, is a link, is not a place for it)."""


class PrivateFile:
    """A binary file being written; :meth:`close` makes it final, :meth:`abort` removes what was written."""

    def __init__(self, path: Path, replace: bool) -> None:
        self.path, self.name = path, str(path)
        self._final = path
        if replace:
            _refuse_link(path)
            self._tmp: Path | None = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            target = self._tmp
        else:
            self._tmp, target = None, path
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError:
            if os.path.islink(target):
                raise FileWriteError(f"{path}: is a symbolic link; overlay-tui does not write through links "
                                     "(give the real path)") from None
            raise FileWriteError(f"{path}: already exists; choose another name or confirm replacing it") from None
        except IsADirectoryError:
            raise FileWriteError(f"{path}: is a directory: add a file name") from None
        except OSError as e:
            raise FileWriteError(f"{path}: cannot write: {e.strerror or e}") from None
        self._fh: BinaryIO = os.fdopen(fd, "wb")
        self.closed = False

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        """Flush, fsync and (when replacing) rename the new file over the old one."""
        if self.closed:
            return
        self.closed = True
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            if self._tmp is not None:
                os.replace(self._tmp, self._final)
        except OSError as e:
            self._discard()
            raise FileWriteError(f"{self._final}: cannot write: {e.strerror or e}") from None

    def abort(self) -> None:
        """Give up: close and remove the file this object created (the old file, if replacing, stays)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._fh.close()
        except OSError:
            pass
        self._discard()

    def _discard(self) -> None:
        try:
            os.unlink(self._tmp if self._tmp is not None else self._final)
        except OSError:
            pass

    def __enter__(self) -> PrivateFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _refuse_link(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise FileWriteError(f"{path}: cannot write: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise FileWriteError(f"{path}: is a symbolic link; overlay-tui does not write through links "
                             "(give the real path)")
    if stat.S_ISDIR(st.st_mode):
        raise FileWriteError(f"{path}: is a directory: add a file name")
    if not stat.S_ISREG(st.st_mode):
        raise FileWriteError(f"{path}: is not a regular file; overlay-tui replaces only regular files")


def create_private(path: str | os.PathLike, *, replace: bool = False) -> PrivateFile:
    """Open ``path`` for writing as a new 0600 file (see the module docstring); FileWriteError names the path."""
    return PrivateFile(Path(path), replace)


def write_private(path: str | os.PathLike, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` as the whole content of ``path`` through :func:`create_private`."""
    with create_private(path, replace=replace) as f:
        f.write(data)


def append_private(path: str | os.PathLike) -> BinaryIO:
    """Open a log for appending: created 0600 if missing, never through a link at its final component."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if os.path.islink(path):
            raise FileWriteError(f"{path}: is a symbolic link; overlay-tui does not write through links") from None
        raise FileWriteError(f"{path}: cannot append: {e.strerror or e}") from None
    return os.fdopen(fd, "ab")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a bare file name a served console may use, or None when it is."""
    if not name:
        return "type a file name, e.g. capture.pcap"
    if "\x00" in name:
        return "a file name cannot contain a NUL character"
    if "/" in name:
        return f"{name!r}: give a file name only, without '/': a served console saves in its session's directory"
    if name in (".", "..") or name.startswith(".."):
        return f"{name!r}: '.' and '..' are not file names"
    if name.startswith("-"):
        return f"{name!r}: a file name cannot start with '-'"
    if name.startswith("."):
        return f"{name!r}: a file name cannot start with '.' here"
    if len(name) > MAX_NAME:
        return f"a file name is at most {MAX_NAME} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r}: a file name cannot contain control characters"
    return None


def session_dir(root: Path, session: str) -> Path:
    """The directory of one served session's files under ``root`` (the state dir's serve/sessions)."""
    if not _SESSION_RE.match(session):
        raise UsageError(f"served session id {session!r} is not valid (letters, digits, '-' and '_')")
    return root / session


class SaveArea:
    """Where a file the console user names is written (see the module docstring)."""

    def __init__(self, guard: WriteGuard, session: str | None = None, root: Path | None = None) -> None:
        """``session`` (a served console's id) confines saves to ``root``/``session``; None means local."""
        self.guard, self.session = guard, session
        self.directory = session_dir(root or Path("."), session) if session else None

    @property
    def served(self) -> bool:
        return self.session is not None

    def target(self, name: str) -> SaveTarget:
        """What saving as ``name`` means; ReadOnlyError when nothing may be saved, UsageError for a bad name."""
        self.guard.require("saving a file")
        name = name.strip()
        if self.directory is None:
            if not name or "\x00" in name:
                raise UsageError("type a file name, e.g. capture.pcap")
            path = Path(name).expanduser().absolute()
            return SaveTarget(path=str(path), exists=os.path.lexists(path), served=False, fetch=None)
        problem = name_problem(name)
        if problem:
            raise UsageError(problem)
        path = self.directory / name
        return SaveTarget(path=str(path), exists=os.path.lexists(path), served=True, fetch=fetch_line(path))

    def open(self, name: str, *, replace: bool = False) -> PrivateFile:
        """Create the file ``name`` names (after :meth:`target`'s checks); the session directory is made 0700."""
        target = self.target(name)
        if self.directory is not None:
            _make_private_dir(self.directory)
        return create_private(target.path, replace=replace)


def _make_private_dir(d: Path) -> None:
    try:
        d.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        d.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(d)
    except OSError as e:
        raise FileWriteError(f"{d}: cannot make the session's directory: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise FileWriteError(f"{d}: is not a directory of this server's user; nothing was saved")


def fetch_line(path: Path) -> str:
    """How the operator copies ``path`` from the serving host to their own machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "USER"
    host = socket.gethostname() or "SERVING-HOST"
    return f"scp {shlex.quote(f'{user}@{host}:{path}')} ."
