"""Capture files read in big chunks: classic pcap and pcapng, plain or gzip-compressed.

:func:`record_batches` yields :class:`RecordBatch` objects: one chunk of the file in a numpy byte
array and, per record, where its bytes start, how many were captured, its length on the wire and its
time. Both the numpy flow path (:mod:`core.capture.batch`) and the per-frame path
(:func:`iter_file_records`) read files through it, so both see the same records.

Formats (detected by magic, never by name):

- classic pcap: both byte orders, usec and nsec; Ethernet only (link type 1).
- pcapng: section header blocks (either byte order; a new section may change it), interface
  description blocks (link type, ``if_tsresol`` and ``if_tsoffset`` per interface, several
  interfaces), enhanced and simple packet blocks; every other block is skipped. A packet on an
  interface whose link type is not Ethernet is refused, as for classic pcap.
- gzip (magic 1f 8b) around either of them.

Finding record boundaries is sequential (each record's length says where the next starts); it is
done for many stretches of a buffer at once, from guessed starts that are then verified, so the result
is exactly the one-at-a-time walk's (:class:`_ChainWalk`).
"""
from __future__ import annotations

import gzip
import mmap
import os
import sys
import zlib
from collections.abc import Generator, Iterator
from struct import Struct
from typing import BinaryIO

import numpy as np

from core.capture.pcap import (
    GLOBAL_HEADER_LEN,
    LINKTYPE_ETHERNET,
    LINKTYPE_NAMES,
    MAGIC_NSEC,
    MAGIC_USEC,
    MAX_RECORD,
    PCAPNG_MAGIC,
    RECORD_HEADER_LEN,
    NotACaptureFile,
    open_pcap,
    parse_global_header,
)
from core.errors import CaptureError

CHUNK = 16 << 20
PAD = 512                      # zero bytes after a chunk, so gathers past a short record stay in bounds
GZIP_MAGIC = b"\x1f\x8b"
SHB, IDB, SPB, EPB = 0x0A0D0D0A, 1, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_TSRESOL, OPT_TSOFFSET = 9, 14

Record = tuple[float, int, int, bytes]   # (ts, caplen, wirelen, data)


class RecordBatch:
    """Complete records of one chunk: ``arr`` the chunk's bytes (zero-padded), and per record the
    offset of its data in ``arr`` (``base``), captured length, length on the wire and timestamp."""

    __slots__ = ("buf", "arr", "base", "cap", "wire", "ts")

    def __init__(self, buf: bytearray, arr: np.ndarray, base: np.ndarray, cap: np.ndarray, wire: np.ndarray,
                 ts: np.ndarray) -> None:
        self.buf, self.arr, self.base, self.cap, self.wire, self.ts = buf, arr, base, cap, wire, ts

    def __len__(self) -> int:
        return len(self.base)


class CaptureFile:
    """An open capture file; iterate :meth:`batches`; afterwards ``truncated`` names a cut-short end.

    ``kind`` is "pcap" or "pcapng"; ``compressed`` is True for gzip. Opening reads the first bytes and
    raises :class:`core.capture.pcap.NotACaptureFile` for a file that is neither format.
    """

    def __init__(self, path: str | os.PathLike, chunk: int = CHUNK) -> None:
        self.path, self.chunk = str(path), max(int(chunk), 64)
        self.records = 0
        self.left = 0                          # bytes at the end that are not a complete record
        self.position = 0                      # where the last batches() stopped (mapped files)
        self.header = None                     # classic pcap: its PcapHeader
        self._fh = open_pcap(path)
        try:
            head = self._read(4)
            self.compressed = head[:2] == GZIP_MAGIC
            if self.compressed:
                self._fh.seek(0)
                self._fh = gzip.GzipFile(fileobj=self._fh, mode="rb")  # type: ignore[assignment]
                head = self._read(4)
            self._head = head
            self.kind = "pcapng" if head == PCAPNG_MAGIC else "pcap"
            if self.kind == "pcap":
                head += self._read(GLOBAL_HEADER_LEN - len(head))
                if len(head) < GLOBAL_HEADER_LEN:
                    what = "empty" if not head else f"only {len(head)} bytes"
                    raise NotACaptureFile(f"{self.path}: is not a pcap or pcapng file ({what})")
                if not any(Struct(e + "I").unpack_from(head)[0] in (MAGIC_USEC, MAGIC_NSEC) for e in "<>"):
                    raise NotACaptureFile(f"{self.path}: is not a pcap or pcapng file (magic 0x{head[:4].hex()})")
                self.header = parse_global_header(head, self.path)
                self._head = b""
        except BaseException:
            self._fh.close()
            raise

    @property
    def truncated(self) -> str | None:
        """A sentence about a record cut short at the end, or None."""
        if not self.left:
            return None
        return f"{self.path}: last record cut short ({self.left} bytes after record {self.records}): ignored"

    def _read(self, n: int) -> bytes:
        try:
            return self._fh.read(n)
        except (OSError, EOFError, zlib.error) as e:
            raise CaptureError(f"{self.path}: cannot read: {getattr(e, 'strerror', None) or e}") from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def batches(self) -> Iterator[RecordBatch]:
        """The file's records, a window at a time. A batch's arrays are valid until the next one.

        A plain file is mapped (no copy: only the pages holding headers are touched); a compressed
        one, and the last bytes of a mapped one, are read into a zero-padded buffer.
        """
        walk, pos = self._walker()
        if not self.compressed:
            mm = self._map()
            if mm is not None:
                try:
                    pos = yield from self._mapped(walk, mm, pos, len(mm) - PAD)
                finally:
                    _close(mm)
                self._fh.seek(pos)
                self._head = b""
        yield from self._chunked(walk, pos)

    def _walker(self) -> tuple[_Walker | _NgWalker, int]:
        if self.kind == "pcap":
            assert self.header is not None
            return _Walker(self.header.endian, self.path, self.header.nsec), GLOBAL_HEADER_LEN
        return _NgWalker(self.path), 0

    def split(self, parts: int = 2, min_size: int = 64 << 20) -> Splitter | None:
        """A :class:`Splitter` cutting a big plain file into ``parts`` ranges at record boundaries found
        near equal offsets (each guess checked: a range is valid only if the walk of the range before
        it ends exactly there); None for a small or compressed file."""
        if self.compressed or parts < 2:
            return None
        mm = self._map()
        if mm is None or len(mm) < min_size:
            if mm is not None:
                _close(mm)
            return None
        walk, pos = self._walker()
        if isinstance(walk, _NgWalker):
            first = walk.prologue(mm, len(mm))
            if first is None:
                _close(mm)
                return None
            pos = first
        cuts: list[int] = []
        for i in range(1, parts):
            c = walk.find_boundary(mm, pos, len(mm) * i // parts, len(mm) - PAD)
            if c is None or (cuts and c <= cuts[-1]):
                break
            cuts.append(c)
        if not cuts:
            _close(mm)
            return None
        return Splitter(self, mm, walk, [pos] + cuts + [len(mm) - PAD])


    def _map(self) -> mmap.mmap | None:
        try:
            size = os.fstat(self._fh.fileno()).st_size
            if size < 2 * PAD + self.chunk:
                return None
            return mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, AttributeError):
            return None

    def _mapped(self, walk: _Walker | _NgWalker, mm: mmap.mmap, pos: int,
                safe: int) -> Generator[RecordBatch, None, int]:
        """Records of the mapped file wholly before ``safe``; returns where it stopped."""
        arr = np.frombuffer(mm, dtype=np.uint8)
        window = self.chunk
        while pos < safe:
            end = min(pos + window, safe)
            _populate(mm, pos, min(end + PAD, len(mm)))
            batch, new = walk(mm, arr, pos, end, 0)
            if batch is not None and len(batch):
                self.records += len(batch)
                yield batch
                batch = None
            if new == pos:
                if end == safe:
                    break
                window *= 2                       # one record longer than the window
                continue
            window = self.chunk
            pos = new
        del arr
        self.position = pos
        return pos

    def _chunked(self, walk: _Walker | _NgWalker, origin: int) -> Iterator[RecordBatch]:
        buf = bytearray(self.chunk + PAD)
        buf[:len(self._head)] = self._head
        fill = len(self._head)
        eof = False
        while True:
            if not eof:
                try:
                    got = self._fh.readinto(memoryview(buf)[fill:len(buf) - PAD])
                except (OSError, EOFError, zlib.error) as e:
                    raise CaptureError(f"{self.path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
                eof = not got
                fill += got or 0
            buf[fill:fill + PAD] = bytes(PAD)
            arr = np.frombuffer(buf, dtype=np.uint8)
            batch, used = walk(buf, arr, 0, fill, origin)
            if batch is not None and len(batch):
                self.records += len(batch)
                yield batch
            batch = None
            del arr
            if used:
                buf[:fill - used] = buf[used:fill]
                fill -= used
                origin += used
                continue
            if eof:
                break
            if fill == len(buf) - PAD:            # one record larger than the buffer: grow it
                buf = buf + bytearray(len(buf))
        walk.finish(fill)
        self.left = fill


class Splitter:
    """Ranges of one mapped file for several processes (see :meth:`CaptureFile.split`).

    ``bounds`` are the range edges. :meth:`part` yields the batches of range ``i`` (the last one
    also reads the file's tail); after it, :attr:`CaptureFile.position` says where the walk stopped,
    which must equal the next range's start for that range's result to be used. ``walker_changed``
    tells whether a range met a new section or interface (pcapng), which the next range, started
    with the walker's state of the first range, would not know.
    """

    def __init__(self, cf: CaptureFile, mm: mmap.mmap, walk: _Walker | _NgWalker, bounds: list[int]) -> None:
        self.cf, self.mm, self.walk, self.bounds = cf, mm, walk, bounds
        self._state = walk.state()

    def part(self, i: int) -> Iterator[RecordBatch]:
        last = i == len(self.bounds) - 2
        pos = yield from self.cf._mapped(self.walk, self.mm, self.bounds[i], self.bounds[i + 1])
        if last:
            self.cf._fh.seek(pos)
            self.cf._head = b""
            yield from self.cf._chunked(self.walk, pos)

    def rest(self, pos: int) -> Iterator[RecordBatch]:
        """Everything from ``pos`` (a record boundary) to the end, in this process."""
        pos = yield from self.cf._mapped(self.walk, self.mm, pos, self.bounds[-1])
        self.cf._fh.seek(pos)
        self.cf._head = b""
        yield from self.cf._chunked(self.walk, pos)

    @property
    def walker_changed(self) -> bool:
        return self.walk.state() != self._state

    def close(self) -> None:
        _close(self.mm)


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform == "linux" else None)


def _populate(mm: mmap.mmap, start: int, end: int) -> None:
    """Map the pages of ``mm[start:end]`` in one go (Linux >= 5.14), rather than one fault at a time
    as the walk first touches them (several times slower); nothing happens where that is not offered."""
    if _MADV_POPULATE_READ is None or end <= start:
        return
    first = start - start % mmap.PAGESIZE
    try:
        mm.madvise(_MADV_POPULATE_READ, first, end - first)
    except (OSError, ValueError, AttributeError):
        pass


def _close(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:                  # a caller still holds a view: the GC closes it
        pass


def record_batches(path: str | os.PathLike, chunk: int = CHUNK) -> Iterator[RecordBatch]:
    """Shorthand: the batches of a file (opened and closed here)."""
    with CaptureFile(path, chunk) as cf:
        yield from cf.batches()


def iter_file_records(cf: CaptureFile) -> Iterator[Record]:
    """Records ``(ts, caplen, wirelen, data)`` one by one (the per-frame path), from big chunks."""
    for b in cf.batches():
        raw = b.buf
        for ts, cap, wire, base in zip(b.ts.tolist(), b.cap.tolist(), b.wire.tolist(), b.base.tolist()):
            yield ts, cap, wire, bytes(raw[base:base + cap])


# --- classic pcap -------------------------------------------------------------------------------------

def _windows(arr: np.ndarray, width: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(arr, width)


class _ChainWalk:
    """Record starts of a buffer, found by walking many chains at once (shared by both formats).

    A record's length says where the next starts, so the walk is a chain. The buffer is cut into
    segments of ``SEGMENT`` bytes; in the first bytes of each a likely record start is guessed (the
    format's :meth:`_seeds`: fields that must hold, for two records in a row); then every chain is
    walked one record a step, all together in numpy, each until it reaches the next segment's guess.
    The first chain starts at a known record, so chain j is right when chain j - 1 ends exactly on its
    guess; a chain that does not is put right by walking on from the last known record (one at a time
    until it meets a position of a chain, from which that chain is right). The result is exactly the
    one-at-a-time walk's, whatever the guesses were; wrong guesses only cost time.
    """

    SEGMENT, WINDOW = 32768, 2048
    FEW = 8                                             # fewer chains left than this: finish them one by one
    endian = "<"                                        # "<" or ">", set by the format

    def _next(self, u32: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
        """Where the record after each of ``pos`` starts; -1 where the record is not a complete, ordinary one."""
        raise NotImplementedError

    def _next_one(self, buf, pos: int, n: int) -> int:
        """:meth:`_next` of one position (the scalar walk)."""
        raise NotImplementedError

    def _seeds(self, arr: np.ndarray, u32: np.ndarray, start: int, first: int, count: int, n: int) -> np.ndarray:
        """A guessed record start in the first ``WINDOW`` bytes of each of ``count`` segments from
        ``first`` (-1: none found); ``start`` is a known record start. ``arr`` is the buffer's bytes,
        ``u32`` the 32-bit number at each of its offsets."""
        raise NotImplementedError

    def _one_by_one(self, buf, pos: int, stop: int, n: int) -> tuple[list[int], int, bool]:
        """Records from ``pos`` until one starts at or after ``stop``: (starts, where it went, ended)."""
        nxt = self._next_one
        out: list[int] = []
        while pos < stop:
            q = nxt(buf, pos, n)
            if q < 0:
                return out, pos, True
            out.append(pos)
            pos = q
        return out, pos, False

    def chain_walk(self, buf, start: int, n: int) -> tuple[np.ndarray, int]:
        """Starts of the complete ordinary records from ``start`` (a record start) in ``buf[:n]``, and
        where the walk stopped (``n``, or a record that is cut short or not ordinary)."""
        count = (n - start) // self.SEGMENT
        if count < 4:
            out, stop, _ = self._one_by_one(buf, start, n, n)
            return np.array(out, dtype=np.int64), stop
        arr = np.frombuffer(buf, dtype=np.uint8)
        u32 = _windows(arr, 4).view(self.endian + "u4")[:, 0]
        guess = self._seeds(arr, u32, start, start + self.SEGMENT, count - 1, n)
        seeds = np.concatenate([[start], guess[guess >= 0]]).astype(np.int64)
        limit = np.append(seeds[1:], n)
        at = seeds.copy()
        ended = np.zeros(len(seeds), dtype=bool)
        found: list[np.ndarray] = []
        live = np.arange(len(seeds))
        while len(live) >= self.FEW:
            p = at[live]
            q = self._next(u32, p, n)
            ok = q >= 0
            row = np.full(len(seeds), -1, dtype=np.int64)   # this step's record of each chain (-1: none)
            row[live[ok]] = p[ok]
            found.append(row)
            at[live] = np.where(ok, q, p)
            ended[live[~ok]] = True
            live = live[ok & (q < limit[live])]
        every = np.stack(found).T.ravel() if found else np.zeros(0, dtype=np.int64)
        starts = every[every >= 0]                          # chain by chain, step by step: file order
        if len(live):                                       # a few long chains left: one record at a time
            more, where = [], []
            for j in live.tolist():
                out, at[j], ended[j] = self._one_by_one(buf, int(at[j]), int(limit[j]), n)
                more += out
                where += [int(np.searchsorted(starts, limit[j]))] * len(out)   # after chain j's starts
            starts = np.insert(starts, where, more) if more else starts
        if not ended[:-1].any() and (at[:-1] == seeds[1:]).all():
            return starts, int(at[-1])
        return self._mend(buf, n, seeds, starts, at, ended)

    def _mend(self, buf, n: int, seeds: np.ndarray, starts: np.ndarray, pos: np.ndarray,
              ended: np.ndarray) -> tuple[np.ndarray, int]:
        """The exact walk from chains some of which started on a wrong guess (see the class docstring)."""
        edges = np.searchsorted(starts, seeds)            # chain j's starts: starts[edges[j]:edges[j + 1]]
        edges = np.append(edges, len(starts))
        pieces: list = []
        cur, j, last = int(seeds[0]), 0, len(seeds) - 1
        while True:
            mine = starts[edges[j]:edges[j + 1]]
            k = int(np.searchsorted(mine, cur))
            if k < len(mine) and mine[k] == cur:          # the true walk meets chain j: from here it is chain j
                pieces.append(mine[k:])
                cur = int(pos[j])
                if ended[j] or j == last:
                    return np.concatenate(pieces).astype(np.int64), cur
            else:
                stop = int(seeds[j + 1]) if j < last else n
                out, cur, stopped = self._one_by_one(buf, cur, stop, n)
                pieces.append(np.array(out, dtype=np.int64))
                if stopped or j == last:
                    return np.concatenate(pieces).astype(np.int64), cur
            j = int(np.searchsorted(seeds, cur, side="right")) - 1


class _Walker(_ChainWalk):
    """Finds the complete records in a buffer of classic pcap records (see :class:`_ChainWalk`)."""

    def __init__(self, endian: str, src: str, nsec: bool = False) -> None:
        self.caplen_at = Struct(endian + "I").unpack_from
        self.endian, self.src, self.nsec = endian, src, nsec

    def __call__(self, buf, arr: np.ndarray, start: int, n: int, origin: int) -> tuple[RecordBatch | None, int]:
        """Records wholly in ``buf[start:n]`` (``origin``: file offset of ``buf[0]``); (batch, where it stopped)."""
        starts, used = self.walk(buf, n, start, origin)
        if not len(starts):
            return None, used
        hdr = _windows(arr, RECORD_HEADER_LEN)[starts].view(self.endian + "u4")
        ts = hdr[:, 0] + hdr[:, 1] / (1e9 if self.nsec else 1e6)
        return RecordBatch(buf, arr, starts + RECORD_HEADER_LEN, hdr[:, 2].astype(np.int64),
                           hdr[:, 3].astype(np.int64), ts), used

    def finish(self, left: int) -> None:
        """End of file with ``left`` bytes not part of a complete record."""

    def state(self) -> tuple:
        return ()

    def find_boundary(self, buf, first: int, near: int, end: int, chain: int = 32) -> int | None:
        """A record start at or after ``near``: the first offset from which ``chain`` records in a row
        look like records (times within a year of the first record's, fraction below one second,
        captured length within the wire length and the limit). A guess: the caller verifies it."""
        if end - first < 16:
            return None
        rec = Struct(self.endian + "IIII").unpack_from
        sec0 = rec(buf, first)[0]
        div = 10 ** 9 if self.nsec else 10 ** 6
        for p in range(near, min(end, near + (4 << 20))):
            q = p
            for _ in range(chain):
                if q + 16 > end:
                    break
                sec, frac, cap, wire = rec(buf, q)
                if frac >= div or cap > wire or cap > MAX_RECORD or abs(sec - sec0) > 366 * 86400:
                    break
                q += 16 + cap
            else:
                return p
        return None

    def walk(self, buf, n: int, start: int = 0, origin: int = GLOBAL_HEADER_LEN) -> tuple[np.ndarray, int]:
        """Offsets of the complete records in ``buf[start:n]`` and where the last one ends."""
        starts, off = self.chain_walk(buf, start, n)
        if off + RECORD_HEADER_LEN <= n and self.caplen_at(buf, off + 8)[0] > MAX_RECORD:
            raise CaptureError(f"{self.src}: record at byte {origin + off} claims "
                               f"{self.caplen_at(buf, off + 8)[0]} captured bytes: the pcap data is corrupt")
        return starts, off

    def _next(self, u32: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
        cap = u32[pos + 8].astype(np.int64)
        q = pos + RECORD_HEADER_LEN + cap
        return np.where((q > n) | (cap > MAX_RECORD), -1, q)

    def _next_one(self, buf, pos: int, n: int) -> int:
        if pos + RECORD_HEADER_LEN > n:
            return -1
        cap = self.caplen_at(buf, pos + 8)[0]
        q = pos + RECORD_HEADER_LEN + cap
        return -1 if q > n or cap > MAX_RECORD else q

    def _seeds(self, arr: np.ndarray, u32: np.ndarray, start: int, first: int, count: int, n: int) -> np.ndarray:
        """Offsets where two records in a row look like records: seconds within a year of the known
        record's, fraction below one second, captured length within the wire length and the limit."""
        span, div, w = 366 * 86400, 10 ** 9 if self.nsec else 10 ** 6, self.WINDOW
        sec0 = int(u32[start])
        big = self.endian == ">"
        top = np.lib.stride_tricks.as_strided(arr[first + (0 if big else 3):], shape=(count, w),
                                              strides=(self.SEGMENT, 1), writeable=False)
        ftop = np.lib.stride_tricks.as_strided(arr[first + (4 if big else 7):], shape=(count, w),
                                               strides=(self.SEGMENT, 1), writeable=False)
        lo, hi = max(sec0 - span, 0) >> 24, min(sec0 + span, 0xFFFFFFFF) >> 24
        hit = np.flatnonzero(((top - np.uint8(lo)) <= np.uint8(hi - lo)) & (ftop <= np.uint8((div - 1) >> 24)))
        row = hit // w
        p = first + row * self.SEGMENT + hit % w
        ok = self._plausible(u32, p, sec0, span, div, n)
        q = np.where(ok, p + RECORD_HEADER_LEN + u32[p + 8].astype(np.int64), p)
        ok &= self._plausible(u32, q, sec0, span, div, n)
        return _first_per_row(row[ok], p[ok], count)

    @staticmethod
    def _plausible(u32: np.ndarray, p: np.ndarray, sec0: int, span: int, div: int, n: int) -> np.ndarray:
        inside = p + RECORD_HEADER_LEN <= n
        p = np.where(inside, p, 0)
        cap = u32[p + 8]
        return (inside & (np.abs(u32[p].astype(np.int64) - sec0) <= span) & (u32[p + 4] < div) & (cap <= u32[p + 12])
                & (cap <= MAX_RECORD) & (p + RECORD_HEADER_LEN + cap.astype(np.int64) <= n))


def _first_per_row(row: np.ndarray, p: np.ndarray, count: int) -> np.ndarray:
    """The first ``p`` of each row (``row`` ascending), -1 for rows with none."""
    out = np.full(count, -1, dtype=np.int64)
    if len(row):
        rows, first = np.unique(row, return_index=True)
        out[rows] = p[first]
    return out


def _u32_at(arr: np.ndarray, pos: np.ndarray, endian: str) -> np.ndarray:
    b = [arr[pos + i].astype(np.int64) for i in range(4)]
    if endian == "<":
        b.reverse()
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


# --- pcapng -------------------------------------------------------------------------------------------

class _Interface:
    __slots__ = ("linktype", "snaplen", "units", "offset")

    def __init__(self, linktype: int, snaplen: int, units: int, offset: int) -> None:
        self.linktype, self.snaplen, self.units, self.offset = linktype, snaplen, units, offset


def parse_tsresol(v: int) -> int:
    """Ticks per second of an ``if_tsresol`` value (MSB clear: 10^-v s; set: 2^-(v & 0x7f) s)."""
    return 1 << (v & 0x7F) if v & 0x80 else 10 ** v


class _NgWalker(_ChainWalk):
    """Walks pcapng blocks: packets in batches, the other blocks understood (SHB, IDB) or skipped."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.endian = ""                       # set by the first section header
        self.ifaces: list[_Interface] = []
        self.origin = 0
        self._hdr = Struct("<II").unpack_from

    def state(self) -> tuple:
        return (self.endian, len(self.ifaces))

    def prologue(self, buf, n: int) -> int | None:
        """Read the section header and interface blocks before the first packet; the offset of the
        first other block (None when the file does not start that way)."""
        pos = 0
        while pos + 12 <= n:
            if bytes(buf[pos:pos + 4]) == PCAPNG_MAGIC:
                used = self._section(buf, pos, n)
                if not used:
                    return None
                pos += used
                continue
            if not self.endian:
                return None
            typ, blen = self._hdr(buf, pos)
            if typ != IDB or blen < 20 or blen & 3 or pos + blen > n:
                return pos
            self._interface(buf, pos)
            pos += blen
        return None

    def find_boundary(self, buf, first: int, near: int, end: int, chain: int = 32) -> int | None:
        """A block start at or after ``near`` (4-byte aligned from ``first``): the first from which
        ``chain`` blocks in a row repeat their length at their end and are not section headers."""
        hdr, u32 = self._hdr, Struct(self.endian + "I").unpack_from
        p0 = near + ((first - near) % 4)
        for p in range(p0, min(end, near + (4 << 20)), 4):
            q = p
            for _ in range(chain):
                if q + 12 > end:
                    break
                typ, blen = hdr(buf, q)
                if typ == SHB or blen < 12 or blen & 3 or blen > MAX_RECORD or q + blen > end \
                        or u32(buf, q + blen - 4)[0] != blen:
                    break
                q += blen
            else:
                return p
        return None

    def finish(self, left: int) -> None:
        if not self.endian:
            raise NotACaptureFile(f"{self.src}: is not a pcapng file (no complete section header block)")

    def _corrupt(self, off: int, why: str) -> CaptureError:
        return CaptureError(f"{self.src}: pcapng block at byte {self.origin + off} {why}: the file is corrupt")

    def __call__(self, buf, arr: np.ndarray, start: int, n: int, origin: int) -> tuple[RecordBatch | None, int]:
        """Packets of the blocks wholly in ``buf[start:n]``; (batch or None, where it stopped)."""
        self.origin = origin
        if n - start >= 12 and bytes(buf[start:start + 4]) == PCAPNG_MAGIC:
            return None, start + self._section(buf, start, n)
        if not self.endian:
            raise NotACaptureFile(f"{self.src}: is not a pcapng file (no section header block first)")
        starts, off = self._walk(buf, start, n)
        if not len(starts):
            return None, off
        e = self.endian
        typ = _u32_at(arr, starts, e)
        others = np.flatnonzero((typ != EPB) & (typ != SPB))
        for i in others.tolist():              # interface descriptions (and skipped blocks), in order
            if typ[i] == IDB:
                self._interface(buf, int(starts[i]))
        pk = np.flatnonzero((typ == EPB) | (typ == SPB))
        if not len(pk):
            return None, off
        if not len(others):
            st = starts
            typ_p = typ
        else:
            st, typ_p = starts[pk], typ[pk]
        return self._packets(buf, arr, st, typ_p), off

    def _packets(self, buf, arr: np.ndarray, st: np.ndarray, typ: np.ndarray) -> RecordBatch:
        e = self.endian
        blen = _u32_at(arr, st + 4, e)
        epb = typ == EPB
        ifid = np.where(epb, _u32_at(arr, st + 8, e), 0)
        nif = len(self.ifaces)
        if not nif or int(ifid.max()) >= nif:
            bad = int(np.flatnonzero(ifid >= nif)[0]) if nif else 0
            raise self._corrupt(int(st[bad]), f"names interface {int(ifid[bad])} of {nif} described")
        hi = _u32_at(arr, st + 12, e).astype(np.uint64)
        lo = _u32_at(arr, st + 16, e).astype(np.uint64)
        ticks = (hi << np.uint64(32)) | lo
        cap = np.where(epb, _u32_at(arr, st + 20, e), 0)
        wire = np.where(epb, _u32_at(arr, st + 24, e), _u32_at(arr, st + 8, e))
        base = np.where(epb, st + 28, st + 12)
        room = blen - np.where(epb, 32, 16)
        spb = ~epb
        if spb.any():                            # simple packet block: captured = min(wire, snaplen, room)
            snap = self.ifaces[0].snaplen or MAX_RECORD
            cap = np.where(spb, np.minimum(np.minimum(wire, snap), room), cap)
        if (cap > room).any():
            i = int(np.flatnonzero(cap > room)[0])
            raise self._corrupt(int(st[i]), f"claims {int(cap[i])} captured bytes in a {int(blen[i])}-byte block")
        lt = np.array([f.linktype for f in self.ifaces])
        if (lt[ifid] != LINKTYPE_ETHERNET).any():
            i = int(np.flatnonzero(lt[ifid] != LINKTYPE_ETHERNET)[0])
            t = int(lt[ifid[i]])
            raise CaptureError(f"{self.src}: interface {int(ifid[i])} has link type {t} "
                               f"({LINKTYPE_NAMES.get(t, 'not Ethernet')}); only Ethernet captures (link type 1) "
                               f"are decoded: capture on the underlay interface itself, not `-i any`")
        units = np.array([f.units for f in self.ifaces], dtype=np.uint64)[ifid]
        offs = np.array([f.offset for f in self.ifaces], dtype=np.int64)[ifid]
        sec = (ticks // units).astype(np.int64) + offs
        ts = sec + (ticks % units).astype(np.float64) / units.astype(np.float64)
        ts = np.where(epb, ts, 0.0)
        return RecordBatch(buf, arr, base.astype(np.int64), cap.astype(np.int64), wire.astype(np.int64), ts)

    def _section(self, buf, start: int, n: int) -> int:
        """A section header at ``start``: byte order, forget interfaces; bytes used (0: need more)."""
        bom = bytes(buf[start + 8:start + 12])
        if bom == b"\x4d\x3c\x2b\x1a":
            e = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            e = ">"
        else:
            raise NotACaptureFile(f"{self.src}: is not a pcapng file (section header byte-order magic 0x{bom.hex()})")
        blen = Struct(e + "I").unpack_from(buf, start + 4)[0]
        if blen < 28 or blen % 4 or blen > MAX_RECORD:
            raise NotACaptureFile(f"{self.src}: is not a pcapng file (section header length {blen})")
        if start + blen > n:
            return 0
        major = Struct(e + "H").unpack_from(buf, start + 12)[0]
        if major != 1:
            raise NotACaptureFile(f"{self.src}: pcapng version {major} is not one overlay-tui reads (1.x)")
        self.endian = e
        self._hdr = Struct(e + "II").unpack_from
        self.ifaces = []
        return blen

    def _interface(self, buf, off: int) -> None:
        e = self.endian
        blen = Struct(e + "I").unpack_from(buf, off + 4)[0]
        linktype, _res, snaplen = Struct(e + "HHI").unpack_from(buf, off + 8)
        units, offset = 10 ** 6, 0
        p, end = off + 16, off + blen - 4
        u16 = Struct(e + "HH").unpack_from
        while p + 4 <= end:
            code, ln = u16(buf, p)
            if code == 0:
                break
            if p + 4 + ln > end:
                raise self._corrupt(off, "has an option running past its end")
            if code == OPT_TSRESOL and ln >= 1:
                units = parse_tsresol(buf[p + 4])
            elif code == OPT_TSOFFSET and ln >= 8:
                offset = Struct(e + "q").unpack_from(buf, p + 4)[0]
            p += 4 + ((ln + 3) & ~3)
        self.ifaces.append(_Interface(linktype, snaplen, units, offset))

    def _walk(self, buf, start: int, n: int) -> tuple[np.ndarray, int]:
        """Offsets of the complete blocks in ``buf[start:n]`` up to (not including) a new section header."""
        starts, off = self.chain_walk(buf, start, n)
        if off + 12 <= n:
            typ, blen = self._hdr(buf, off)
            if typ != SHB and (blen < 12 or blen & 3 or blen > MAX_RECORD):
                raise self._corrupt(off, f"(type {typ}) has length {blen}")
        return starts, off

    def _next(self, u32: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
        typ, blen = u32[pos], u32[pos + 4].astype(np.int64)
        q = pos + blen
        bad = (typ == SHB) | (blen < 12) | ((blen & 3) != 0) | (blen > MAX_RECORD) | (q > n) | (pos + 12 > n)
        return np.where(bad, -1, q)

    def _next_one(self, buf, pos: int, n: int) -> int:
        if pos + 12 > n:
            return -1
        typ, blen = self._hdr(buf, pos)
        q = pos + blen
        return -1 if typ == SHB or blen < 12 or blen & 3 or blen > MAX_RECORD or q > n else q

    def _seeds(self, arr: np.ndarray, u32: np.ndarray, start: int, first: int, count: int, n: int) -> np.ndarray:
        """Enhanced packet blocks (4-byte aligned from ``start``) whose length is repeated at their end."""
        w = self.WINDOW // 4
        view = np.lib.stride_tricks.as_strided(u32[first:], shape=(count, w), strides=(self.SEGMENT, 4),
                                               writeable=False)
        hit = np.flatnonzero(view == EPB)
        row = hit // w
        p = first + row * self.SEGMENT + 4 * (hit % w)
        blen = u32[p + 4].astype(np.int64)
        ok = (blen >= 32) & ((blen & 3) == 0) & (blen <= MAX_RECORD) & (p + blen <= n)
        ok &= u32[np.where(ok, p + blen - 4, p)] == blen
        return _first_per_row(row[ok], p[ok], count)


def open_capture(path: str | os.PathLike, chunk: int = CHUNK) -> CaptureFile:
    return CaptureFile(path, chunk)


__all__ = ["CaptureFile", "RecordBatch", "record_batches", "iter_file_records", "open_capture", "BinaryIO"]
