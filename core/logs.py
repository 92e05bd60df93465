"""overlay-tui's log file: one rotating file under the state dir for the console and every command.

:func:`configure` is called once by each front door (the CLI for every subcommand, the console
through it). Records of ``core.*`` and ``tui.*`` go there at INFO (DEBUG with ``--debug``); other
libraries' at WARNING. The file and its rotations are created mode 0600 (they may name hosts and
carry what nodes answered). Every string in a record may come from a node, so the formatter
neutralises control characters: a node cannot forge log lines or send escape sequences to whoever
runs ``less`` on the file.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import re
from pathlib import Path

from core.paths import state_dir

LOG_NAME = "overlay-tui.log"
MAX_BYTES = 4 * 1024 * 1024
BACKUPS = 3
#: the loggers of our own code (everything else logs at WARNING and above)
OWN_LOGGERS = ("core", "tui", "bench")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def neutral(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``).

    A small local neutraliser for log lines; a general sanitizer for what the screens show lives
    elsewhere in core.
    """
    pattern = _CONTROL_KEEP_NL if keep_newlines else _CONTROL
    return pattern.sub(lambda m: repr(m.group())[1:-1], text)


def log_path() -> Path:
    """Where the log file is (it may not exist yet)."""
    return state_dir() / LOG_NAME


class _Formatter(logging.Formatter):
    """A record's message on one line; a traceback on lines of its own, each marked ``  | `` (an
    exception's text from a node cannot pass for a record), every other control char escaped."""

    def format(self, record: logging.LogRecord) -> str:
        message = neutral(record.getMessage())
        line = f"{self.formatTime(record)} {record.levelname} {record.name}[{record.process}]: {message}"
        extra = []
        if record.exc_info:
            extra.append(self.formatException(record.exc_info))
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for block in extra:
            line += "".join("\n  | " + neutral(part) for part in block.splitlines())
        return line


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files (the live one and each rotation) are created 0600."""

    def _open(self):  # the base class calls it to open (and, after a rollover, reopen) the file
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)          # an existing file made by an older version: tighten it
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors="backslashreplace")


_installed: logging.Handler | None = None


def configure(*, debug: bool = False, path: Path | None = None) -> Path | None:
    """Send our records to the rotating log file; return its path, or None when it cannot be written.

    Calling it again replaces the previous handler (tests, a console opened from the CLI).
    """
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        _installed.close()
        _installed = None
    target = path or log_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = PrivateRotatingFileHandler(target, maxBytes=MAX_BYTES, backupCount=BACKUPS, delay=False)
    except OSError:
        return None                   # a read-only state dir must not stop the command itself
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)
    _installed = handler
    return target


def current_path() -> Path | None:
    """The file :func:`configure` opened, if any."""
    return Path(_installed.baseFilename) if isinstance(_installed, logging.FileHandler) else None
