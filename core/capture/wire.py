"""What the capture worker process (:mod:`core.capture.worker`) and the console say to each other.

Messages are length-prefixed: 4 bytes (little endian) of length, then 4 bytes of header length, a JSON
header, and a binary body. The worker's batch message carries its frames in columns, not as objects:

- one fixed-size record per frame (:data:`RECORD`: time, lengths, ports, VNI, where its captured bytes
  sit in the body, and 15 string ids),
- the frames' captured bytes, back to back,
- the strings the ids refer to: the worker interns every address, name, protocol and info text once and
  sends each new one once (``strings`` in the header); a capture with too many distinct strings starts a
  new table (``reset``), and each batch keeps the table it was made with.

The console wraps a batch in :class:`FrameColumns`, a ``Sequence[Frame]`` that builds a Frame only for a
row someone reads (the list's rows on screen, a filter, a save, a detail): taking a batch in costs the
console no Python work per frame. The header also carries the batch's per-flow counts
(:class:`core.model.FlowDelta`), so flows are summed per batch, never over every frame again.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from operator import attrgetter
from struct import Struct
from typing import Any, overload

from core.model import FlowDelta, Frame, Names

MAX_MESSAGE = 256 * 1024 * 1024
LENGTH = Struct("<I")
# ts, wire_len, length, outer_sport, outer_dport, vni (-1: none), raw offset, raw length, 15 string ids
RECORD = Struct("<dIIHHiII15I")
STRING_FIELDS = ("node", "outer_src", "outer_dst", "inner_src", "inner_dst", "inner_src_mac", "inner_dst_mac",
                 "proto", "info", "network", "src_name", "dst_name", "outer_src_name", "outer_dst_name", "error")
_STRINGS = attrgetter(*STRING_FIELDS)
MAX_STRINGS = 1_000_000        # a new table after this many distinct strings (old batches keep theirs)


class ProtocolError(Exception):
    """A message that does not parse (a bug or a corrupted pipe)."""


def pack_message(header: dict[str, Any], body: bytes = b"") -> bytes:
    """One message: length, header length, JSON header, body."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return LENGTH.pack(4 + len(head) + len(body)) + LENGTH.pack(len(head)) + head + body


def unpack_message(payload: bytes) -> tuple[dict[str, Any], memoryview]:
    """(header, body) of one message's payload (what follows its length)."""
    if len(payload) < 4:
        raise ProtocolError("message shorter than its header length")
    (hlen,) = LENGTH.unpack_from(payload)
    try:
        header = json.loads(payload[4:4 + hlen])
    except ValueError as e:
        raise ProtocolError(f"message header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    return header, memoryview(payload)[4 + hlen:]


class _Interner(dict):
    """String -> id; a miss appends the string to ``table`` and ``fresh`` (sent with the next batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.table: list[str | None] = []
        self.fresh: list[str | None] = []
        self[None] = self._add(None)
        self[""] = self._add("")

    def _add(self, s: str | None) -> int:
        self.table.append(s)
        self.fresh.append(s)
        return len(self.table) - 1

    def __missing__(self, s: str) -> int:
        i = self[s] = self._add(s)
        return i


class ColumnEncoder:
    """The worker's side: frames (already decoded and named) -> a batch message's columns."""

    def __init__(self) -> None:
        self.strings = _Interner()
        self.reset = True                   # the next batch starts a new string table

    def encode(self, frames: Sequence[Frame]) -> tuple[dict[str, Any], bytes]:
        """(header fields: n, strings, reset; body: records then captured bytes)."""
        if len(self.strings.table) > MAX_STRINGS:
            self.strings, self.reset = _Interner(), True
        ids = self.strings.__getitem__
        rec = RECORD.pack
        recs: list[bytes] = []
        raws: list[bytes] = []
        off = 0
        for f in frames:
            raw = f.raw
            n = len(raw)
            vni = f.vni
            recs.append(rec(f.ts, f.wire_len, f.length, f.outer_sport, f.outer_dport, -1 if vni is None else vni,
                            off, n, *map(ids, _STRINGS(f))))
            raws.append(raw)
            off += n
        header = {"n": len(frames), "strings": self.strings.fresh, "reset": self.reset}
        self.strings.fresh = []
        self.reset = False
        return header, b"".join(recs) + b"".join(raws)


class ColumnDecoder:
    """The console's side: batch messages -> :class:`FrameColumns` (holds the string table)."""

    def __init__(self) -> None:
        self.table: list[str | None] = []

    def decode(self, header: dict[str, Any], body: memoryview | bytes) -> FrameColumns:
        if header.get("reset"):
            self.table = []                 # batches already made keep the old list
        self.table.extend(header.get("strings") or ())
        n = int(header.get("n") or 0)
        size = n * RECORD.size
        if len(body) < size:
            raise ProtocolError(f"batch of {n} frames has {len(body)} bytes, fewer than its records")
        data = bytes(body)
        return FrameColumns(data, n, self.table)


class FrameColumns(Sequence[Frame]):
    """A batch's frames in columns; ``[i]`` builds (once) the Frame of row ``i``. Slices are views."""

    __slots__ = ("data", "rows", "table", "lo", "hi", "cache")

    def __init__(self, data: bytes, rows: int, table: list[str | None], lo: int = 0, hi: int | None = None,
                 cache: dict[int, Frame] | None = None) -> None:
        self.data, self.rows, self.table = data, rows, table      # rows: of the whole batch (a slice shows lo..hi)
        self.lo, self.hi = lo, rows if hi is None else hi
        self.cache: dict[int, Frame] = {} if cache is None else cache

    def __len__(self) -> int:
        return self.hi - self.lo

    @overload
    def __getitem__(self, i: int) -> Frame: ...
    @overload
    def __getitem__(self, i: slice) -> FrameColumns: ...

    def __getitem__(self, i: int | slice) -> Frame | FrameColumns:
        n = self.hi - self.lo
        if isinstance(i, slice):
            a, b, step = i.indices(n)
            if step != 1:
                raise ValueError("FrameColumns slices take no step")
            return FrameColumns(self.data, self.rows, self.table, self.lo + a, self.lo + max(a, b), self.cache)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        j = self.lo + i
        f = self.cache.get(j)
        if f is None:
            f = self.cache[j] = self._build(j)
        return f

    def _build(self, j: int) -> Frame:
        (ts, wire_len, length, sport, dport, vni, roff, rlen, node, osrc, odst, isrc, idst, smac, dmac, proto, info,
         network, src_name, dst_name, osrc_name, odst_name, error) = RECORD.unpack_from(self.data, j * RECORD.size)
        s = self.table
        start = self.rows * RECORD.size + roff
        return Frame(ts, s[node], self.data[start:start + rlen], wire_len, s[osrc], s[odst], sport, dport,
                     None if vni < 0 else vni, s[isrc], s[idst], s[smac], s[dmac], s[proto], s[info], length,
                     s[network], s[src_name], s[dst_name], s[osrc_name], s[odst_name], s[error])

    def __iter__(self) -> Iterator[Frame]:
        get = self.__getitem__
        for i in range(self.hi - self.lo):
            yield get(i)

    def __repr__(self) -> str:
        return f"<FrameColumns {len(self)} frames>"


# --- flow deltas and names in a header --------------------------------------------------------------------
def flows_to_json(deltas: list[FlowDelta]) -> list[list]:
    return [[d.vni, d.inner_src, d.inner_dst, d.proto, d.packets, d.bytes, [[b, p, n] for b, (p, n) in d.recent.items()]]
            for d in deltas]


def flows_from_json(rows: list[list]) -> list[FlowDelta]:
    return [FlowDelta(vni, src, dst, proto, int(p), int(n), {int(b): [int(bp), int(bn)] for b, bp, bn in recent})
            for vni, src, dst, proto, p, n, recent in rows]


def names_equal(a: Names | None, b: Names | None) -> bool:
    return a is not None and b is not None and (a.networks, a.containers, a.nodes) == (b.networks, b.containers,
                                                                                       b.nodes)
