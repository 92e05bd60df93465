"""pcap in and out: files, and the byte stream ``tcpdump -w -`` writes (over SSH, say).

- :class:`PcapStreamParser` turns a classic pcap byte stream arriving in arbitrary chunks into
  records ``(ts, caplen, wirelen, data)`` (the live path).
- :func:`iter_pcap` / :func:`read_pcap_frames` read a file: classic pcap or pcapng, plain or gzip
  (see :mod:`core.capture.records`, which reads files in big chunks);
  :class:`PcapWriter` / :func:`write_pcap` write a classic pcap that tcpdump and Wireshark open
  (little endian, microseconds, link type Ethernet), :class:`PcapngWriter` a pcapng (one section,
  one Ethernet interface, microseconds); :func:`open_writer` picks by the file's extension.

Both byte orders and both resolutions (usec, nsec) are read; link types other than Ethernet are
refused with a :class:`core.errors.CaptureError` naming the source and what it is; a file that is
no capture at all is a :class:`NotACaptureFile` (bad input: exit 2).
A record cut short at the end is reported in ``truncated`` (a sentence), never raised.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from io import BufferedReader
from struct import Struct
from typing import BinaryIO, Self

from core.errors import CaptureError
from core.files import FileWriteError, PrivateFile, create_private
from core.model import Frame

LINKTYPE_ETHERNET = 1
MAGIC_USEC, MAGIC_NSEC = 0xA1B2C3D4, 0xA1B23C4D
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GLOBAL_HEADER_LEN, RECORD_HEADER_LEN = 24, 16
MAX_RECORD = 16 * 1024 * 1024        # a record claiming more than this means the file is corrupt
DEFAULT_SNAPLEN = 262144
READ_CHUNK = 1 << 20
LINKTYPE_NAMES = {0: "BSD loopback", 101: "raw IP", 105: "802.11", 113: "Linux cooked (SLL, from `-i any`)",
                  127: "802.11 radiotap", 276: "Linux cooked v2 (SLL2)"}

Record = tuple[float, int, int, bytes]   # (ts, caplen, wirelen, data)


class NotACaptureFile(CaptureError):
    """The input is neither a classic pcap nor a pcapng (plain or gzip): bad input, exit 2."""

    exit_code = 2


class PcapHeader:
    """What a classic pcap global header says."""

    __slots__ = ("endian", "nsec", "snaplen", "linktype", "version")

    def __init__(self, endian: str, nsec: bool, snaplen: int, linktype: int, version: str) -> None:
        self.endian, self.nsec, self.snaplen, self.linktype, self.version = endian, nsec, snaplen, linktype, version


def parse_global_header(head: bytes, source: str) -> PcapHeader:
    """Validate a 24-byte pcap global header; CaptureError (naming ``source``) if it is not one we read."""
    if head[:4] == PCAPNG_MAGIC:
        raise NotACaptureFile(f"{source}: is a pcapng stream; a live capture stream must be classic pcap "
                              f"(`tcpdump -w -`)")
    if len(head) < GLOBAL_HEADER_LEN:
        what = "empty" if not head else f"only {len(head)} bytes"
        raise NotACaptureFile(f"{source}: is not a pcap file ({what}, a pcap header needs 24 bytes)")
    for endian in ("<", ">"):
        magic = Struct(endian + "I").unpack_from(head)[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            major, minor, _tz, _sig, snaplen, linktype = Struct(endian + "HHiIII").unpack_from(head, 4)
            linktype &= 0xFFFF                   # upper bits hold FCS info in newer writers
            if linktype != LINKTYPE_ETHERNET:
                name = LINKTYPE_NAMES.get(linktype, "not Ethernet")
                raise CaptureError(f"{source}: link type {linktype} ({name}); only Ethernet captures (link type 1) "
                                   f"are decoded: capture on the underlay interface itself, not `-i any`")
            return PcapHeader(endian, magic == MAGIC_NSEC, snaplen, linktype, f"{major}.{minor}")
    raise NotACaptureFile(f"{source}: is not a pcap file (magic 0x{head[:4].hex()})")


def _check_magic(head4: bytes, source: str) -> None:
    if head4 == PCAPNG_MAGIC:
        parse_global_header(head4, source)
    if not any(Struct(e + "I").unpack(head4)[0] in (MAGIC_USEC, MAGIC_NSEC) for e in "<>"):
        raise NotACaptureFile(f"{source}: is not a pcap file (magic 0x{head4.hex()})")


class PcapStreamParser:
    """Incremental pcap parser: ``feed(chunk)`` returns the records completed by that chunk.

    Chunks may split the global header or any record anywhere. ``close()`` returns a sentence if
    the stream ended inside a record (also kept in ``truncated``), else None.
    """

    def __init__(self, source: str = "capture stream") -> None:
        self.source = source
        self.header: PcapHeader | None = None
        self.records = 0
        self.consumed = 0                  # bytes of the stream fully parsed
        self.truncated: str | None = None
        self._buf = bytearray()
        self._rec: Struct | None = None
        self._div = 1e6

    def feed(self, chunk: bytes) -> list[Record]:
        buf = self._buf
        buf += chunk
        if self.header is None:
            if len(buf) < GLOBAL_HEADER_LEN:
                if len(buf) >= 4:
                    _check_magic(bytes(buf[:4]), self.source)      # a wrong magic fails at once
                return []
            self.header = parse_global_header(bytes(buf[:GLOBAL_HEADER_LEN]), self.source)
            self._rec = Struct(self.header.endian + "IIII")
            self._div = 1e9 if self.header.nsec else 1e6
            del buf[:GLOBAL_HEADER_LEN]
            self.consumed = GLOBAL_HEADER_LEN
        out: list[Record] = []
        assert self._rec is not None                       # set with the header above
        unpack, div, n, off = self._rec.unpack_from, self._div, len(buf), 0
        while off + RECORD_HEADER_LEN <= n:
            sec, frac, caplen, wirelen = unpack(buf, off)
            if caplen > MAX_RECORD:
                raise CaptureError(f"{self.source}: record at byte {self.consumed + off} claims {caplen} "
                                   f"captured bytes: the pcap data is corrupt")
            end = off + RECORD_HEADER_LEN + caplen
            if end > n:
                break
            out.append((sec + frac / div, caplen, wirelen, bytes(buf[off + RECORD_HEADER_LEN:end])))
            off = end
        if off:
            del buf[:off]
            self.consumed += off
        self.records += len(out)
        return out

    def pending(self) -> int:
        """Bytes received but not yet part of a complete record."""
        return len(self._buf)

    def close(self) -> str | None:
        """End of stream: CaptureError if no complete pcap header came; a sentence if a record was cut."""
        if self.header is None:
            parse_global_header(bytes(self._buf), self.source)
        if self._buf and self.truncated is None:
            self.truncated = (f"{self.source}: last record cut short ({len(self._buf)} bytes after record "
                              f"{self.records}): ignored")
        return self.truncated


def open_pcap(path: str | os.PathLike) -> BufferedReader:
    """Open a pcap file for reading; a missing or unreadable file is a CaptureError naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{path}: is a directory, not a pcap file") from None
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from None


class PcapFileReader:
    """Iterates a capture file's records (classic pcap or pcapng, plain or gzip); after iteration
    ``truncated`` tells of a cut-short last record. Opening happens on iteration."""

    def __init__(self, path: str | os.PathLike, chunk: int = READ_CHUNK) -> None:
        self.path, self.chunk = str(path), chunk
        self.header: PcapHeader | None = None
        self.kind: str | None = None
        self.truncated: str | None = None

    def __iter__(self) -> Iterator[Record]:
        from core.capture.records import CaptureFile, iter_file_records  # numpy: only when a file is read
        with CaptureFile(self.path, self.chunk) as cf:
            self.header, self.kind = cf.header, cf.kind
            yield from iter_file_records(cf)
            self.truncated = cf.truncated


def iter_pcap(path: str | os.PathLike) -> Iterator[Record]:
    """Records of a pcap file (see :class:`PcapFileReader` to learn of a truncated end)."""
    return iter(PcapFileReader(path))


def read_pcap_frames(path: str | os.PathLike, decoder=None, node: str = "") -> Iterator[Frame]:
    """Decode every record of a file with the fast path (a :class:`core.capture.decode.VxlanDecoder`)."""
    from core.capture.decode import VxlanDecoder
    dec = decoder or VxlanDecoder()
    decode = dec.decode
    for ts, _caplen, wirelen, data in iter_pcap(path):
        yield decode(data, ts, wirelen, node)


class CaptureWriter:
    """What both writers share: the target (a new private file, an owned :class:`core.files.PrivateFile`, or
    an open binary file), its name in errors, the file's header written first, and closing or aborting.

    A path is created with :func:`core.files.create_private` (0600, never through a link, an existing file only
    with ``replace=True``); a :class:`core.files.PrivateFile` is owned too (closed, or removed on error).
    """

    KIND = "capture"

    def __init__(self, target: str | os.PathLike | BinaryIO | PrivateFile, snaplen: int = DEFAULT_SNAPLEN,
                 *, replace: bool = False) -> None:
        if isinstance(target, (str, os.PathLike)):
            target = create_private(target, replace=replace)
        self.path = target.name if isinstance(target, PrivateFile) else getattr(target, "name", self.KIND)
        self._fh = target
        self.snaplen, self.count = snaplen, 0
        self._put(self._header(), abort=True)

    def _header(self) -> bytes:
        """The bytes that start the file."""
        raise NotImplementedError

    def _record(self, ts: float, data: bytes, wire_len: int) -> bytes:
        """One frame's record (``data`` already cut to the snap length)."""
        raise NotImplementedError

    def _put(self, data: bytes, abort: bool = False) -> None:
        try:
            self._fh.write(data)
        except OSError as e:
            if abort:                        # the header: nothing useful written, leave nothing behind
                self.abort()
            raise CaptureError(f"{self.path}: cannot write: {e.strerror or e}") from None

    def write(self, ts: float, data: bytes, wire_len: int | None = None) -> None:
        wl = max(wire_len or 0, len(data))
        self._put(self._record(ts, data[:self.snaplen], wl))
        self.count += 1

    def write_frame(self, frame: Frame) -> None:
        self.write(frame.ts, frame.raw, frame.wire_len)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if isinstance(self._fh, PrivateFile):
            try:
                self._fh.close()
            except FileWriteError as e:
                raise CaptureError(str(e)) from None
        else:
            self._fh.flush()

    def abort(self) -> None:
        """Stop writing; a file this writer created is removed (nothing half-written is left behind)."""
        if isinstance(self._fh, PrivateFile):
            self._fh.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _sec_usec(ts: float) -> tuple[int, int]:
    sec = int(ts)
    usec = round((ts - sec) * 1e6)
    if usec >= 1000000:
        sec, usec = sec + 1, usec - 1000000
    return sec, usec


class PcapWriter(CaptureWriter):
    """Writes a classic pcap (little endian, usec, Ethernet) to a new private file or an open binary file."""

    KIND = "pcap"
    _GLOBAL = Struct("<IHHiIII")
    _REC = Struct("<IIII")

    def _header(self) -> bytes:
        return self._GLOBAL.pack(MAGIC_USEC, 2, 4, 0, 0, self.snaplen, LINKTYPE_ETHERNET)

    def _record(self, ts: float, data: bytes, wire_len: int) -> bytes:
        sec, usec = _sec_usec(ts)
        return self._REC.pack(sec, usec, len(data), wire_len) + data


class PcapngWriter(CaptureWriter):
    """Writes a pcapng: one section (little endian), one Ethernet interface (microseconds), and an
    enhanced packet block per frame. Same interface as :class:`PcapWriter`."""

    KIND = "pcapng"
    _SHB = Struct("<IIIHHqI")
    _IDB = Struct("<IIHHIHHBxxxHHI")
    _EPB = Struct("<IIIIIII")

    def _header(self) -> bytes:
        # IDB: link type, snaplen, option if_tsresol = 6 (microseconds), opt_endofopt
        return (self._SHB.pack(0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
                + self._IDB.pack(1, 32, LINKTYPE_ETHERNET, 0, self.snaplen, 9, 1, 6, 0, 0, 32))

    def _record(self, ts: float, data: bytes, wire_len: int) -> bytes:
        sec = int(ts)
        ticks = sec * 1000000 + round((ts - sec) * 1e6)
        pad = -len(data) % 4
        blen = 32 + len(data) + pad
        return (self._EPB.pack(6, blen, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire_len)
                + data + bytes(pad) + blen.to_bytes(4, "little"))


def open_writer(path: str | os.PathLike | PrivateFile, snaplen: int = DEFAULT_SNAPLEN, *,
                replace: bool = False) -> CaptureWriter:
    """A pcapng writer for a path ending in ``.pcapng``, else a classic pcap writer (a new private file:
    see :func:`core.files.create_private`; ``replace`` an existing one atomically)."""
    name = path.name if isinstance(path, PrivateFile) else str(path)
    cls = PcapngWriter if name.lower().endswith(".pcapng") else PcapWriter
    return cls(path, snaplen, replace=replace)


def write_pcap(target: str | os.PathLike | PrivateFile, frames: Iterable[Frame], *, replace: bool = False) -> int:
    """Write frames to a new pcap (or pcapng) file (``replace``: over an existing one, atomically); returns how many."""
    with open_writer(target, replace=replace) as w:
        for f in frames:
            w.write_frame(f)
        return w.count
