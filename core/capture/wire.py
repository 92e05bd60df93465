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
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from struct import Struct
from typing import Any, overload

from core.capture.flows import FlowTable
from core.model import FlowDelta, Frame, Names

MAX_MESSAGE = 256 * 1024 * 1024
LENGTH = Struct("<I")
# vni (-1: none), 15 string ids, ts, wire_len, length, outer_sport, outer_dport, raw offset, raw length.
# The first KEY_LEN bytes (the VNI and the 13 strings before info and error) are everything a display filter
# reads: rows alike there match alike, so a filter is evaluated once per distinct key, not once per frame.
RECORD = Struct("<i15IdIIHHII")
KEY_LEN = 4 + 13 * 4
STRING_FIELDS = ("node", "outer_src", "outer_dst", "inner_src", "inner_dst", "inner_src_mac", "inner_dst_mac",
                 "proto", "network", "src_name", "dst_name", "outer_src_name", "outer_dst_name", "info", "error")
_DTYPE: Any = None              # RECORD as a numpy dtype (made on first use: numpy loads only when needed)
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
            recs.append(rec(-1 if vni is None else vni, *map(ids, _STRINGS(f)), f.ts, f.wire_len, f.length,
                            f.outer_sport, f.outer_dport, off, n))
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
        if isinstance(body, memoryview) and isinstance(body.obj, bytes):   # the tail of a message: no copy
            return FrameColumns(body.obj, n, self.table, base=len(body.obj) - body.nbytes)
        return FrameColumns(bytes(body), n, self.table)


class FrameColumns(Sequence[Frame]):
    """A batch's frames in columns; ``[i]`` builds (once) the Frame of row ``i``. Slices are views."""

    __slots__ = ("data", "base", "rows", "table", "lo", "hi", "cache")

    def __init__(self, data: bytes, rows: int, table: list[str | None], lo: int = 0, hi: int | None = None,
                 cache: dict[int, Frame] | None = None, base: int = 0) -> None:
        self.data, self.rows, self.table = data, rows, table      # rows: of the whole batch (a slice shows lo..hi)
        self.base = base                                          # where the records start in ``data``
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
            return FrameColumns(self.data, self.rows, self.table, self.lo + a, self.lo + max(a, b), self.cache,
                                self.base)
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
        (vni, node, osrc, odst, isrc, idst, smac, dmac, proto, network, src_name, dst_name, osrc_name, odst_name, info,
         error, ts, wire_len, length, sport, dport, roff, rlen) = RECORD.unpack_from(self.data, self.base + j * RECORD.size)
        s = self.table
        start = self.base + self.rows * RECORD.size + roff
        return Frame(ts, s[node], self.data[start:start + rlen], wire_len, s[osrc], s[odst], sport, dport,
                     None if vni < 0 else vni, s[isrc], s[idst], s[smac], s[dmac], s[proto], s[info], length,
                     s[network], s[src_name], s[dst_name], s[osrc_name], s[odst_name], s[error])

    def _records(self) -> Any:
        """This view's records as a numpy structured array (no copy)."""
        import numpy as np  # only once a filter or a filtered flow count needs it
        global _DTYPE
        if _DTYPE is None:
            _DTYPE = np.dtype([("vni", "<i4"), ("ids", "<u4", (15,)), ("ts", "<f8"), ("wire_len", "<u4"),
                               ("length", "<u4"), ("sport", "<u2"), ("dport", "<u2"), ("roff", "<u4"), ("rlen", "<u4")])
            assert _DTYPE.itemsize == RECORD.size
        return np.frombuffer(self.data, dtype=_DTYPE, count=self.rows, offset=self.base)[self.lo:self.hi]

    def select(self, predicate: Callable[[Frame], bool], memo: dict[bytes, bool]) -> list[int]:
        """Rows (of this view) whose frame ``predicate`` accepts, given that it reads only the VNI and the
        strings before info and error (a display filter's fields): it runs once per distinct such key, on a
        Frame built for the first row with it (numpy groups the rows). ``memo`` keeps the answers: one per
        predicate and string table."""
        import numpy as np
        if self.hi <= self.lo:
            return []
        raw = np.frombuffer(self.data, dtype=np.uint8, count=self.rows * RECORD.size,
                            offset=self.base).reshape(self.rows, RECORD.size)
        keys = np.ascontiguousarray(raw[self.lo:self.hi, :KEY_LEN]).view(f"V{KEY_LEN}").ravel()
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        verdict = np.zeros(len(uniq), dtype=bool)
        for u in range(len(uniq)):
            kb = uniq[u].tobytes()
            hit = memo.get(kb)
            if hit is None:
                hit = memo[kb] = bool(predicate(self[int(first[u])]))
            verdict[u] = hit
        return np.flatnonzero(verdict[inverse.ravel()]).tolist()

    def count_flows(self, rows: list[int], table: FlowTable) -> None:
        """Add rows (of this view) to ``table`` as :meth:`FlowTable.add` of their frames would, without the frames."""
        import numpy as np
        if not rows:
            return
        rec = self._records()[np.asarray(rows, dtype=np.int64)]
        ids = rec["ids"]
        cols = np.stack([rec["vni"].astype(np.int64), ids[:, 3].astype(np.int64), ids[:, 4].astype(np.int64),
                         ids[:, 7].astype(np.int64), np.floor(rec["ts"] / table.step).astype(np.int64)], axis=1)
        keys = np.ascontiguousarray(cols).view("V40").ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        uniq = cols[first]
        packets = np.bincount(inverse, minlength=len(uniq))
        nbytes = np.bincount(inverse, weights=rec["length"].astype(np.float64), minlength=len(uniq))
        s = self.table
        deltas: dict[tuple, FlowDelta] = {}
        for (vni, isrc, idst, proto, bucket), p, n in zip(uniq.tolist(), packets.tolist(), nbytes.tolist()):
            key = (None if vni < 0 else vni, s[isrc], s[idst], s[proto])
            d = deltas.get(key)
            if d is None:
                d = deltas[key] = FlowDelta(key[0], key[1], key[2], key[3], 0, 0, {})
            d.packets += p
            d.bytes += int(n)
            d.recent[bucket] = [p, int(n)]
        table.merge_deltas(deltas.values())

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
