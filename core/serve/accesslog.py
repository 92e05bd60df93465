"""The access log of `serve`: one JSON object a line, every value escaped and cut short.

Anything a client sends (user name, terminal type, the algorithm lists asyncssh repeats in a key-exchange
error, a key comment) reaches the log only as a JSON string value: control characters are escaped, a newline
cannot start a forged line, and no value is longer than :data:`MAX_VALUE` characters. asyncssh's own warnings go
through the same formatter. Errors that can repeat very fast (``accept()``: too many open files) are logged at
most once per :data:`ERROR_EVERY` seconds, with how many were left out.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from core.files import append_private
from core.text import clean_line

log = logging.getLogger("overlay_tui.serve")
MAX_VALUE = 256
MAX_MESSAGE = 2048
ERROR_EVERY = 10.0


def short(value: object, limit: int = MAX_VALUE) -> str | int | float | bool | None:
    """A log-safe value: numbers and None as they are, anything else as cleaned text of at most ``limit`` chars."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = clean_line(str(value))
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit} chars)"


class JsonLineFormatter(logging.Formatter):
    """``{"time", "level", "msg", ...fields}``; the message's arguments and every field are :func:`short`."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args if isinstance(record.args, tuple) else ((record.args,) if record.args else ())
        try:
            msg = str(record.msg) % tuple(short(a) for a in args) if args else str(record.msg)
        except (TypeError, ValueError):
            msg = f"{record.msg} {args}"
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname}
        if record.name != log.name:
            out["logger"] = short(record.name)
        out["msg"] = short(msg, MAX_MESSAGE)
        for k, v in (getattr(record, "fields", None) or {}).items():
            out[str(short(k, 40))] = short(v)
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = short(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}", MAX_MESSAGE)
        return json.dumps(out, ensure_ascii=True)


def fields(**kw: object) -> dict[str, dict[str, object]]:
    """``extra=`` for a log call: named values that become JSON fields of the line."""
    return {"fields": kw}


def setup_logging(log_file: Path | None) -> None:
    """Access log lines (admitted, refused, sessions) to stderr and, if given, appended to ``log_file`` (0600)."""
    fmt = JsonLineFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        stream = io.TextIOWrapper(append_private(log_file), encoding="utf-8", line_buffering=True)
        handlers.append(logging.StreamHandler(stream))
    foreign = logging.getLogger("asyncssh")
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
        foreign.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    foreign.setLevel(logging.WARNING)
    foreign.propagate = False


class ErrorGate:
    """Lets one log line through per ``every`` seconds for each kind of repeated error; counts the others."""

    def __init__(self, every: float = ERROR_EVERY) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """None: drop this one; else how many of ``kind`` were dropped since the last one let through."""
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self.every:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._dropped.pop(kind, 0)


def install_loop_error_gate(loop: asyncio.AbstractEventLoop, gate: ErrorGate) -> None:
    """Route the loop's unhandled errors (e.g. ``accept()`` out of file descriptors) to the access log, rate-limited."""

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = f"{context.get('message', 'error')}: {type(exc).__name__ if exc else ''}"
        dropped = gate.allow(kind)
        if dropped is None:
            return
        log.error("%s (%s)%s", context.get("message", "event loop error"), exc,
                  f"; {dropped} more like it in the last {gate.every:.0f} s" if dropped else "")

    loop.set_exception_handler(handler)
