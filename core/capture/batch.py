"""Batch path: pcap file -> per-flow counters at ~1M frames/s, with numpy.

Used by ``capture --read FILE --flows`` (and by anything that wants flows of a large file).
Records are located with a tight ``struct`` loop, then each header field of a whole batch is
gathered and checked with numpy. Only frames of the common, fully understood shapes are counted
here: outer Ethernet (<= 2 VLAN tags), IPv4 (unfragmented, any options) or IPv6, UDP to the VXLAN
port, VXLAN with the I bit, inner Ethernet (<= 2 tags) carrying IPv4 (unfragmented), IPv6 without
extension headers, or Ethernet/IPv4 ARP, with enough bytes captured for what the fast path reads.
Every other frame (malformed, not VXLAN, fragments, rare shapes) goes through the per-frame decoder
(:class:`core.capture.decode.VxlanDecoder`), so the result equals the per-frame path exactly.
"""
from __future__ import annotations

import os
from itertools import repeat
from struct import Struct

import numpy as np

from core.capture.decode import DEFAULT_VXLAN_PORT, IPV6_EXT_HEADERS, AddressFormatter, VxlanDecoder, proto_name
from core.capture.flows import FlowTable
from core.capture.pcap import GLOBAL_HEADER_LEN, MAX_RECORD, RECORD_HEADER_LEN, open_pcap, parse_global_header
from core.errors import CaptureError

CHUNK = 4 << 20
PAD = 512                      # zero bytes after a chunk, so gathers past a short record stay in bounds
_EXT = np.array(sorted(IPV6_EXT_HEADERS))
KIND_IPV4, KIND_IPV6, KIND_ARP = 4, 6, 1


class _Batch:
    """One chunk's records as numpy arrays, with byte/u16 gathers relative to each frame's start."""

    def __init__(self, arr: np.ndarray, starts: np.ndarray, endian: str, nsec: bool) -> None:
        hdr = _windows(arr, RECORD_HEADER_LEN)[starts].view(endian + "u4")   # one 16-byte copy a record
        self.arr, self.base = arr, starts + RECORD_HEADER_LEN
        self.ts = hdr[:, 0] + hdr[:, 1] / (1e9 if nsec else 1e6)
        self.cap = hdr[:, 2].astype(np.int64)
        self.wire = np.maximum(hdr[:, 3].astype(np.int64), self.cap)

    def b(self, off) -> np.ndarray:
        return self.arr[self.base + off].astype(np.int64)

    def u16(self, off) -> np.ndarray:
        p = self.base + off
        return (self.arr[p].astype(np.int64) << 8) | self.arr[p + 1]

    def u32(self, off) -> np.ndarray:
        return (self.u16(off) << 16) | self.u16(off + 2)

    def u64(self, off) -> np.ndarray:
        return _windows(self.arr, 8)[self.base + off].view(">u8")[:, 0]

    def skip_tags(self, off, et):
        """Skip up to 2 VLAN tags; gathers only the (rare) tagged rows."""
        for _ in range(2):
            tagged = np.nonzero((et == 0x8100) | (et == 0x88A8) | (et == 0x9100))[0]
            if not len(tagged):
                break
            et, off = et.copy(), off.copy()
            et[tagged] = self.sub(tagged).u16(off[tagged] + 2)
            off[tagged] += 4
        return off, et

    def sub(self, rows: np.ndarray) -> _Batch:
        """A view of some rows (same buffer), for gathers on those rows only."""
        s = _Batch.__new__(_Batch)
        s.arr, s.base = self.arr, self.base[rows]
        return s


def _windows(arr: np.ndarray, width: int) -> np.ndarray:
    """Overlapping ``width``-byte rows of ``arr`` (a view): ``[offsets]`` copies those rows at once."""
    return np.lib.stride_tricks.sliding_window_view(arr, width)


def _need(p: np.ndarray) -> np.ndarray:
    """L4 bytes the per-frame decoder reads for protocol ``p`` (see vxlan_decode.L4_NEEDED)."""
    return np.where((p == 6) | (p == 17), 4, np.where((p == 1) | (p == 58), 2, 0))


def _decode(bt: _Batch, port: int):
    """Vectorised decode; returns (ok mask, kind, protocol number, vni, src, dst (IPv4 as ints),
    inner L3 offset, inner frame length). Rows not ok go to the per-frame decoder."""
    cap = bt.cap
    off, et = bt.skip_tags(np.full(len(cap), 14), bt.u16(12))
    vihl = bt.b(off)
    ihl = (vihl & 15) * 4
    v4 = (et == 0x0800) & (vihl >> 4 == 4) & (ihl >= 20) & (bt.b(off + 9) == 17) & ((bt.u16(off + 6) & 0x1FFF) == 0)
    v6 = (et == 0x86DD) & (vihl >> 4 == 6) & (bt.b(off + 6) == 17)
    udp = np.where(v4, off + ihl, off + 40)
    ok = (v4 | v6) & (bt.u16(udp + 2) == port) & ((bt.b(udp + 8) & 8) != 0)
    vni = bt.u32(udp + 12) >> 8
    inner = udp + 16
    ioff, iet = bt.skip_tags(inner + 14, bt.u16(inner + 12))
    ivihl = bt.b(ioff)
    iihl = (ivihl & 15) * 4
    p4, nh = bt.b(ioff + 9), bt.b(ioff + 6)
    i4 = ((iet == 0x0800) & (ivihl >> 4 == 4) & (iihl >= 20) & ((bt.u16(ioff + 6) & 0x1FFF) == 0)
          & (cap >= ioff + np.maximum(iihl, 20) + _need(p4)))
    i6 = (iet == 0x86DD) & (ivihl >> 4 == 6) & ~np.isin(nh, _EXT, kind="table") & (cap >= ioff + 40 + _need(nh))
    arp = (iet == 0x0806) & (cap >= ioff + 28)
    ar = np.nonzero(arp)[0]
    if len(ar):                                   # Ethernet/IPv4 ARP only; other ARP goes per frame
        sb, ao = bt.sub(ar), ioff[ar]
        arp[ar] = (sb.u16(ao) == 1) & (sb.u16(ao + 2) == 0x0800) & (sb.u16(ao + 4) == 0x0604)
    ok &= (i4 | i6 | arp) & (cap >= inner + 14)
    kind = np.where(i4, KIND_IPV4, np.where(i6, KIND_IPV6, KIND_ARP))
    pnum = np.where(i4, p4, np.where(i6, nh, 0))
    src = bt.u32(ioff + np.where(arp, 14, 12))
    dst = bt.u32(ioff + np.where(arp, 24, 16))
    return ok, kind, pnum, vni, src, dst, ioff, bt.wire - inner


def _factorize(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group ids for rows of equal column values; returns (ids, index of each group's first row)."""
    n = len(cols[0])
    code, size = np.zeros(n, dtype=np.int64), 1
    for c in cols:
        u, inv = np.unique(c, return_inverse=True)
        if size * len(u) > 1 << 40:          # keep the mixed code small: renumber it densely first
            _, code = np.unique(code, return_inverse=True)
            size = int(code.max()) + 1
        code, size = code * len(u) + inv, size * len(u)
    if size > 4 * n + 4096:
        _, first, ids = np.unique(code, return_index=True, return_inverse=True)
        return ids, first
    return _dense(code, size)


def _dense(code: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber codes in [0, size) to 0..G-1 without sorting; (ids, first row of each id)."""
    present = np.zeros(size, dtype=bool)
    present[code] = True
    gid = np.cumsum(present) - 1
    ids = gid[code]
    first = np.empty(int(present.sum()), dtype=np.int64)
    first[ids[::-1]] = np.arange(len(code) - 1, -1, -1)
    return ids, first


class _Aggregator:
    """Adds one batch's accepted rows to a FlowTable, with the same keys and buckets as FlowTable.add."""

    def __init__(self, table: FlowTable, fmt: AddressFormatter) -> None:
        self.table, self.fmt = table, fmt

    def add(self, bt: _Batch, rows: np.ndarray, kind, pnum, vni, src, dst, ioff, length) -> None:
        if not len(rows):
            return
        k, p, v, ln, ts = kind[rows], pnum[rows], vni[rows], length[rows], bt.ts[rows]
        c0 = (k.astype(np.uint64) << 40) | (p.astype(np.uint64) << 24) | v.astype(np.uint64)
        c1 = (src[rows].astype(np.uint64) << 32) | dst[rows].astype(np.uint64)
        cols = [c0, c1]
        six = np.nonzero(k == KIND_IPV6)[0]
        if len(six):                              # IPv6 addresses: 4 more 64-bit columns, gathered for v6 rows
            r6 = rows[six]
            sub = bt.sub(r6)
            sub.base = sub.base + ioff[r6]
            for o in (8, 16, 24, 32):
                col = np.zeros(len(rows), dtype=np.uint64)
                col[six] = sub.u64(o)
                cols.append(col)
        ids, first = _factorize(cols)
        packets = np.bincount(ids, minlength=len(first))
        nbytes = np.bincount(ids, weights=ln, minlength=len(first))
        tbl = self.table
        bucket = np.floor(ts / tbl.step).astype(np.int64)
        top = int(bucket.max()) if tbl.newest_bucket is None else max(tbl.newest_bucket, int(bucket.max()))
        recent = self._recent(ids, bucket, ln, top - tbl.slots, len(first))
        newest = float(ts.max())
        for g, i in enumerate(first.tolist()):
            key = self._key(bt, rows[i], int(k[i]), int(p[i]), int(v[i]), int(ioff[rows[i]]))
            tbl.merge(key, int(packets[g]), int(nbytes[g]), recent.get(g, {}), newest)

    def _recent(self, ids, bucket, ln, floor_b: int, groups: int) -> dict[int, dict[int, list[int]]]:
        m = bucket > floor_b
        width = self.table.slots + 1
        cell = ids[m] * width + (bucket[m] - floor_b)
        pk = np.bincount(cell, minlength=groups * width)
        by = np.bincount(cell, weights=ln[m], minlength=groups * width)
        out: dict[int, dict[int, list[int]]] = {}
        for c in np.nonzero(pk)[0].tolist():
            g, b = divmod(c, width)
            out.setdefault(g, {})[floor_b + b] = [int(pk[c]), int(by[c])]
        return out

    def _key(self, bt: _Batch, row: int, kind: int, pnum: int, vni: int, ioff: int) -> tuple:
        a = bt.base[row] + ioff
        raw = bt.arr
        if kind == KIND_IPV6:
            return (vni, self.fmt(raw[a + 8:a + 24].tobytes()), self.fmt(raw[a + 24:a + 40].tobytes()),
                    proto_name(6, pnum))
        if kind == KIND_ARP:
            return vni, self.fmt(raw[a + 14:a + 18].tobytes()), self.fmt(raw[a + 24:a + 28].tobytes()), "ARP"
        return vni, self.fmt(raw[a + 12:a + 16].tobytes()), self.fmt(raw[a + 16:a + 20].tobytes()), proto_name(4, pnum)


def flows_from_pcap(path: str | os.PathLike, port: int = DEFAULT_VXLAN_PORT, table: FlowTable | None = None,
                    chunk: int = CHUNK, decoder: VxlanDecoder | None = None) -> tuple[FlowTable, str | None]:
    """Per-flow counters of a whole pcap file; returns (table, sentence about a truncated end or None).

    ``decoder`` (optional) is the per-frame decoder used for the frames the batch does not take; pass
    one to read its counters (``udp_ports``, ``port_hint()``) afterwards.
    """
    table = table or FlowTable()
    decoder = decoder or VxlanDecoder(port)
    agg = _Aggregator(table, decoder.fmt)
    src = str(path)
    with open_pcap(path) as fh:
        hdr = parse_global_header(fh.read(GLOBAL_HEADER_LEN), src)
        walk = _Walker(hdr.endian, src)
        buf = bytearray(chunk + PAD)
        fill = 0
        while True:
            try:
                got = fh.readinto(memoryview(buf)[fill:len(buf) - PAD])
            except OSError as e:
                raise CaptureError(f"{src}: cannot read: {e.strerror or e}") from None
            if not got:
                break
            fill += got
            starts, used = walk(buf, fill)
            if len(starts):
                buf[fill:fill + PAD] = bytes(PAD)
                _process(buf, starts, hdr, port, agg, decoder)
            elif fill == len(buf) - PAD:          # one record larger than the buffer: grow it
                buf = buf + bytearray(len(buf))
                continue
            buf[:fill - used] = buf[used:fill]
            fill -= used
    truncated = None
    if fill:
        truncated = f"{src}: last record cut short ({fill} bytes after record {table.frames}): ignored"
    return table, truncated


class _Walker:
    """Finds the complete records in a buffer.

    A tight loop reads each record's caplen. Captures with a snap length (``tcpdump -s 128``) have
    long runs of records of one caplen: the walker then predicts a run's record offsets at once and
    checks every predicted caplen with numpy (exact: a run ends at the first record that differs).
    Failed predictions back off exponentially, so files of mixed sizes pay almost nothing for them.
    """

    MIN_RUN, MAX_RUN, MAX_BACKOFF = 16, 1 << 16, 4096

    def __init__(self, endian: str, src: str) -> None:
        self.caplen_at = Struct(endian + "I").unpack_from
        self.endian, self.src, self.consumed = endian, src, GLOBAL_HEADER_LEN
        self.backoff = 1

    def __call__(self, buf: bytearray, n: int) -> tuple[np.ndarray, int]:
        """Offsets of the complete records in ``buf[:n]`` and the bytes they span."""
        caplen_at = self.caplen_at
        pieces: list = []
        starts: list[int] = []
        push = starts.append
        lim, off, budget = n - RECORD_HEADER_LEN, 0, self.backoff
        while off <= lim:
            for _ in repeat(None, budget):
                if off > lim:
                    break
                end = off + RECORD_HEADER_LEN + caplen_at(buf, off + 8)[0]
                if end > n:
                    break
                push(off)
                off = end
            else:
                if off > lim:
                    break
                run = self._run(buf, n, off)
                if run is not None:
                    pieces += [np.array(starts, dtype=np.int64), run]
                    starts = []
                    push = starts.append
                    off = int(run[-1]) + (int(run[1]) - int(run[0]))
                    budget = self.backoff = 1
                else:
                    budget = self.backoff = min(self.backoff * 2, self.MAX_BACKOFF)
                continue
            break
        if off <= lim and caplen_at(buf, off + 8)[0] > MAX_RECORD:
            raise CaptureError(f"{self.src}: record at byte {self.consumed + off} claims "
                               f"{caplen_at(buf, off + 8)[0]} captured bytes: the pcap data is corrupt")
        self.consumed += off
        pieces.append(np.array(starts, dtype=np.int64))
        return np.concatenate(pieces), off

    def _run(self, buf: bytearray, n: int, off: int) -> np.ndarray | None:
        """Offsets of the run of records of the same caplen starting at ``off``, or None if short."""
        c = self.caplen_at(buf, off + 8)[0]
        stride = RECORD_HEADER_LEN + c
        k = min((n - off) // stride, self.MAX_RUN)
        probe = self.caplen_at
        if k < self.MIN_RUN or any(probe(buf, off + 8 + stride * i)[0] != c for i in range(1, self.MIN_RUN)):
            return None                          # cheap probe first: most failed predictions end here
        arr = np.frombuffer(buf, dtype=np.uint8, count=n)
        pos = off + 8 + stride * np.arange(k, dtype=np.int64)
        b = [arr[pos + i].astype(np.int64) for i in range(4)]
        if self.endian == "<":
            b.reverse()
        vals = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
        differ = np.flatnonzero(vals != c)
        m = k if not len(differ) else int(differ[0])
        return pos[:m] - 8 if m >= self.MIN_RUN else None


def _process(buf: bytearray, starts: np.ndarray, hdr, port: int, agg: _Aggregator, decoder: VxlanDecoder) -> None:
    arr = np.frombuffer(buf, dtype=np.uint8)
    bt = _Batch(arr, starts, hdr.endian, hdr.nsec)
    ok, *fields = _decode(bt, port)
    agg.add(bt, np.nonzero(ok)[0], *fields)
    bad = np.nonzero(~ok)[0]
    if len(bad):
        add, decode = agg.table.add, decoder.decode
        ts, cap, wire, base = (bt.ts[bad].tolist(), bt.cap[bad].tolist(), bt.wire[bad].tolist(),
                               bt.base[bad].tolist())
        for t, c, w, b in zip(ts, cap, wire, base):
            add(decode(bytes(buf[b:b + c]), t, w))
