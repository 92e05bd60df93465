"""Strings from nodes, pcaps and etcd are hostile: neutralise the characters a terminal would act on.

:func:`clean` replaces every C0 control character (but tab and newline when ``layout`` says they mean layout),
DEL, every C1 control character and the bidirectional overrides with a visible escape (``\\x1b``,
``\\u202e``), so an ESC ] 0 ; title BEL, an OSC 52 clipboard write or ESC [ 2 J reach a screen or a log as
text, never as a command to the terminal. :func:`scrub` applies it to every string in a result (dataclasses,
lists, tuples, dicts), as the service façades do before anything leaves core for a front door.

Textual markup (``[b]``, ``[/x]``) is not core's business: the console escapes it where it shows a string.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")


def _visible(m: re.Match[str]) -> str:
    c = m.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def clean(s: str, *, layout: bool = True) -> str:
    """``s`` with control characters shown as escapes; ``layout=False`` escapes tab and newline too."""
    if s.isprintable() and not any(c in _BIDI for c in s):   # the common case costs one C-level scan
        return s
    if layout:
        s = s.replace("\r\n", "\n")
    return (_UNSAFE if layout else _UNSAFE_LINE).sub(_visible, s)


def clean_line(s: str) -> str:
    """``s`` as one line: tab and newline are escaped too (names, keys, host names)."""
    return clean(s, layout=False)


def scrub(obj: T) -> T:
    """A copy of ``obj`` with :func:`clean` applied to every string in it (dataclasses, lists, tuples, dicts).

    Other objects (numbers, None, bytes, enums) are returned as they are.
    """
    return _scrub(obj)


def _scrub(obj: Any) -> Any:
    if isinstance(obj, str):
        return clean(obj)
    if isinstance(obj, list):
        return [_scrub(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_scrub(x) for x in obj)
    if isinstance(obj, dict):
        return {_scrub(k): _scrub(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: _scrub(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    return obj


async def scrubbed(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """``stream`` with :func:`scrub` applied to each item; closing this closes ``stream`` too."""
    try:
        async for item in stream:
            yield scrub(item)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
