"""Batch path: capture file -> per-flow counters at ~1M frames/s, with numpy.

Used by ``capture --read FILE --flows`` (and by anything that wants flows of a large file).
Records are located by :mod:`core.capture.records` (classic pcap or pcapng, plain or gzip), then
each header field of a whole batch is gathered and checked with numpy. Only frames of the common,
fully understood shapes are decoded here: outer Ethernet (<= 2 VLAN tags), IPv4 (unfragmented, any
options) or IPv6, UDP to the VXLAN port, VXLAN with the I bit, inner Ethernet (<= 2 tags) carrying
IPv4 (unfragmented), IPv6 without extension headers, or Ethernet/IPv4 ARP, with enough bytes captured
for what the fast path reads. Every other frame (malformed, not VXLAN, fragments, rare shapes) goes
through the per-frame decoder (:class:`core.capture.decode.VxlanDecoder`), so the result equals the
per-frame path exactly. Flows are counted by :class:`core.capture.flowagg.FlowCounter` (a vectorised
hash table over packed keys: no Python work per flow either).
"""
from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import tempfile
from collections.abc import Callable

import numpy as np

from core.capture.decode import DEFAULT_VXLAN_PORT, IPV6_EXT_HEADERS, VxlanDecoder
from core.capture.flowagg import KIND_IPV6, FlowCounter, pack_ip_keys
from core.capture.records import CHUNK, CaptureFile, RecordBatch, Splitter, _Walker

__all__ = ["flows_from_pcap", "count_batch", "_Walker", "CHUNK"]

_EXT = np.array(sorted(IPV6_EXT_HEADERS))
KIND_IPV4, KIND_ARP = 4, 1
_HEAD = 96                     # bytes of each record the common-shape test reads (all within PAD)
_U64 = np.uint64
SPLIT_MIN = 64 << 20          # files at least this big are counted by two processes (see flows_from_pcap)


class _Batch:
    """One chunk's records as numpy arrays, with byte/u16 gathers relative to each frame's start."""

    def __init__(self, rb: RecordBatch, rows: np.ndarray | None = None) -> None:
        self.arr = rb.arr
        self.be16 = _windows(rb.arr, 2).view(">u2")[:, 0]       # the big-endian u16 at every offset (a view)
        self.be32 = _windows(rb.arr, 4).view(">u4")[:, 0]
        if rows is None:
            self.base, self.ts, self.cap, wire = rb.base, rb.ts, rb.cap, rb.wire
        else:
            self.base, self.ts, self.cap, wire = rb.base[rows], rb.ts[rows], rb.cap[rows], rb.wire[rows]
        self.wire = np.maximum(wire, self.cap)

    def b(self, off) -> np.ndarray:
        return self.arr[self.base + off].astype(np.int64)

    def u16(self, off) -> np.ndarray:
        return self.be16[self.base + off].astype(np.int64)

    def u32(self, off) -> np.ndarray:
        return self.be32[self.base + off].astype(np.int64)

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
        s.arr, s.be16, s.be32, s.base = self.arr, self.be16, self.be32, self.base[rows]
        return s


def _windows(arr: np.ndarray, width: int) -> np.ndarray:
    """Overlapping ``width``-byte rows of ``arr`` (a view): ``[offsets]`` copies those rows at once."""
    return np.lib.stride_tricks.sliding_window_view(arr, width)


def _need(p: np.ndarray) -> np.ndarray:
    """L4 bytes the per-frame decoder reads for protocol ``p`` (see vxlan_decode.L4_NEEDED)."""
    return np.where((p == 6) | (p == 17), 4, np.where((p == 1) | (p == 58), 2, 0))


def _decode(bt: _Batch, port: int, extra: dict | None = None):
    """Vectorised decode; returns (ok mask, kind, protocol number, vni, src, dst (IPv4 as ints),
    inner L3 offset, inner frame length). Rows not ok go to the per-frame decoder. ``extra`` (a dict)
    receives the outer L3 offset ("off"), whether the outer IP is v4 ("v4"), the UDP offset ("udp")
    and the inner L4 offset ("l4")."""
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
    if extra is not None:
        extra.update(off=off, v4=v4, udp=udp, l4=ioff + np.where(i4, iihl, 40))
    return ok, kind, pnum, vni, src, dst, ioff, bt.wire - inner


def _v6_columns(bt: _Batch, rows: np.ndarray, kind: np.ndarray, ioff: np.ndarray) -> list[np.ndarray] | None:
    """The four 64-bit halves of IPv6 source and destination, for the IPv6 rows (zeros elsewhere)."""
    six = np.flatnonzero(kind == KIND_IPV6)
    if not len(six):
        return None
    sub = bt.sub(rows[six])
    sub.base = sub.base + ioff[six]
    out = []
    for o in (8, 16, 24, 32):
        col = np.zeros(len(rows), dtype=np.uint64)
        col[six] = sub.u64(o)
        out.append(col)
    return out


def _common(h: np.ndarray, cap: np.ndarray, port: int) -> np.ndarray:
    """Rows of the most common shape, read at fixed offsets of their first bytes ``h``: untagged
    Ethernet/IPv4 (no options, unfragmented)/UDP to ``port``/VXLAN with the I bit/untagged Ethernet/IPv4
    (no options, unfragmented), captured far enough for the L4 bytes the per-frame decoder reads."""
    m = (h[:, 12] == 8) & (h[:, 13] == 0) & (h[:, 14] == 0x45) & (h[:, 23] == 17) & ((h[:, 20] & 0x1F) == 0)
    m &= (h[:, 21] == 0) & (h[:, 36] == port >> 8) & (h[:, 37] == port & 0xFF) & ((h[:, 42] & 8) != 0)
    m &= (h[:, 62] == 8) & (h[:, 63] == 0) & (h[:, 64] == 0x45) & ((h[:, 70] & 0x1F) == 0) & (h[:, 71] == 0)
    m &= cap >= 84 + _need(h[:, 73])
    return m


def count_batch(rb: RecordBatch, port: int, counter: FlowCounter, decoder: VxlanDecoder) -> None:
    """Count one batch of records into ``counter``: common shapes vectorised, the rest per frame."""
    h = _windows(rb.arr, _HEAD)[rb.base]            # the first bytes of every record, one copy
    cm = _common(h, rb.cap, port)
    ci = np.flatnonzero(cm)
    parts: list[tuple[list[np.ndarray], np.ndarray, np.ndarray]] = []     # (key columns, lengths, times)
    if len(ci):
        hc = h if len(ci) == len(cm) else h[ci]
        p = hc[:, 73].astype(np.uint64)
        vni = (hc[:, 46].astype(np.uint64) << _U64(16)) | (hc[:, 47].astype(np.uint64) << _U64(8)) | hc[:, 48]
        c0 = (_U64(KIND_IPV4 << 40)) | (p << _U64(24)) | vni
        c1 = np.ascontiguousarray(hc[:, 76:84]).view(">u8")[:, 0].astype(np.uint64)
        z = np.zeros(len(ci), dtype=np.uint64)
        cap, wire = (rb.cap, rb.wire) if hc is h else (rb.cap[ci], rb.wire[ci])
        parts.append(([c0, c1, z, z, z], np.maximum(wire, cap) - 50, rb.ts if hc is h else rb.ts[ci]))
        if len(ci) == len(cm):
            counter.add_keys(*parts[0])
            return
    bt = _Batch(rb, None if not len(ci) else np.flatnonzero(~cm))
    ok, kind, pnum, vni, src, dst, ioff, length = _decode(bt, port)
    rows = np.flatnonzero(ok)
    if len(rows) == len(ok):
        cols = pack_ip_keys(kind, pnum, vni, src, dst, _v6_columns(bt, rows, kind, ioff))
        parts.append((cols, length, bt.ts))
    elif len(rows):
        k, io = kind[rows], ioff[rows]
        cols = pack_ip_keys(k, pnum[rows], vni[rows], src[rows], dst[rows], _v6_columns(bt, rows, k, io))
        parts.append((cols, length[rows], bt.ts[rows]))
    if len(parts) == 1:
        counter.add_keys(*parts[0])
    elif parts:                                      # one lookup for the whole batch
        counter.add_keys([np.concatenate([pt[0][c] for pt in parts]) for c in range(5)],
                         np.concatenate([pt[1] for pt in parts]), np.concatenate([pt[2] for pt in parts]))
    bad = np.flatnonzero(~ok)
    if len(bad):
        decode, buf = decoder.decode, rb.buf
        counter.add_frames(decode(bytes(buf[b:b + c]), t, w) for t, c, w, b in
                           zip(bt.ts[bad].tolist(), bt.cap[bad].tolist(), bt.wire[bad].tolist(),
                               bt.base[bad].tolist()))


def flows_from_pcap(path: str | os.PathLike, port: int = DEFAULT_VXLAN_PORT, table: FlowCounter | None = None,
                    chunk: int = CHUNK, decoder: VxlanDecoder | None = None, workers: int | None = None,
                    split_min: int = SPLIT_MIN) -> tuple[FlowCounter, str | None]:
    """Per-flow counters of a whole capture file; returns (counter, sentence about a truncated end or None).

    ``decoder`` (optional) is the per-frame decoder used for the frames the batch does not take; pass
    one to read its counters (``udp_ports``, ``port_hint()``) afterwards. A plain file of at least
    ``split_min`` bytes is cut in two at a record boundary and the second half counted by a forked
    process at the same time (``workers``: 1 = never; default: 2 when there are 2 cores or more); its
    result is used only if the first half's walk ends exactly where the second began.
    """
    counter = table if table is not None else FlowCounter()
    decoder = decoder or VxlanDecoder(port)
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) >= 2 else 1
    with CaptureFile(path, chunk) as cf:
        sp = cf.split(2, split_min) if workers >= 2 and hasattr(os, "fork") else None
        if sp is None:
            for rb in cf.batches():
                count_batch(rb, port, counter, decoder)
        else:
            try:
                _count_split(cf, sp, port, counter, decoder)
            finally:
                sp.close()
    return counter, cf.truncated


def _count_split(cf: CaptureFile, sp: Splitter, port: int, counter: FlowCounter, decoder: VxlanDecoder,
                 each: Callable | None = None, out=None) -> None:
    """Count ``sp``'s two ranges, the second in a forked child. ``each(rb, counter, decoder, sink)``
    (default: :func:`count_batch`) handles a batch; whatever the child writes to its sink (a temp file)
    is copied to ``out`` after the parent's own output, so output keeps the file's order."""
    def work(rb: RecordBatch, c: FlowCounter, d: VxlanDecoder, sink) -> None:
        if each is None:
            count_batch(rb, port, c, d)
        else:
            each(rb, c, d, sink)
    tmp = tempfile.TemporaryFile() if out is not None else None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # the child: the second range, then its counts
        code = 0
        try:
            os.close(r)
            mine, dec = FlowCounter(counter.window, counter.slots), VxlanDecoder(port)
            sink = None if tmp is None else io.TextIOWrapper(tmp, encoding="utf-8", write_through=False)
            for rb in sp.part(1):
                work(rb, mine, dec, sink)
            if sink is not None:
                sink.flush()
            result: tuple = ("ok", mine.state(copy=False), (dec.frames, dec.malformed, dec.not_vxlan, dec.udp_ports),
                             cf.records, cf.left)
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which redoes the range
            result = ("error", repr(e))
        try:
            with os.fdopen(w, "wb") as fw:
                _send(fw, result)
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(w)
    done = False
    try:
        for rb in sp.part(0):
            work(rb, counter, decoder, out)
        if cf.position == sp.bounds[1] and not sp.walker_changed:
            with os.fdopen(r, "rb") as f:
                r = -1
                res = _receive(f)
            if res[0] == "ok":
                _, state, (frames, malformed, not_vxlan, ports), records, left = res
                counter.merge_state(state)
                decoder.frames += frames
                decoder.malformed += malformed
                decoder.not_vxlan += not_vxlan
                for p, n in ports.items():
                    decoder.udp_ports[p] = decoder.udp_ports.get(p, 0) + n
                cf.records += records
                cf.left = left
                done = True
                if tmp is not None:
                    _copy_out(tmp, out)
    finally:
        if r >= 0:
            os.close(r)
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
        if tmp is not None:
            tmp.close()
    if not done:                                      # a wrong guess (or the child failed): go on alone
        for rb in sp.rest(cf.position):
            work(rb, counter, decoder, out)


_SIZE = struct.Struct("<Q")


def _send(f, obj) -> None:
    """``obj`` pickled to the binary file ``f``, its arrays' bytes written as they are (pickle protocol 5,
    out of band: no copy of the counters, which are tens of MB at 100k flows)."""
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    raws = [b.raw() for b in bufs]
    f.write(_SIZE.pack(len(raws)) + b"".join(_SIZE.pack(len(x)) for x in [memoryview(head), *raws]))
    f.write(head)
    for x in raws:
        f.write(x)


def _receive(f) -> tuple:
    """What :func:`_send` wrote (each array read straight into its own buffer); ("error", why) if the
    writer ended before it was whole."""
    def exactly(n: int) -> bytearray | None:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = f.readinto(view[got:])
            if not k:
                return None
            got += k
        return buf
    first = exactly(_SIZE.size)
    if first is None:
        return ("error", "no result")
    count = _SIZE.unpack(first)[0]
    sizes = exactly(_SIZE.size * (count + 1))
    if sizes is None:
        return ("error", "cut short")
    parts = [exactly(_SIZE.unpack_from(sizes, i * _SIZE.size)[0]) for i in range(count + 1)]
    if any(p is None for p in parts):
        return ("error", "cut short")
    return pickle.loads(parts[0], buffers=parts[1:])  # type: ignore[arg-type]


def _copy_out(tmp, out) -> None:
    """The child's output (a file) after what ``out`` already has: in the kernel when ``out`` is a file."""
    out.flush()
    size = tmp.seek(0, os.SEEK_END)
    tmp.seek(0)
    try:
        fd = out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is None:
        out.write(tmp.read().decode("utf-8"))
        return
    sent = 0
    while sent < size:
        n = os.sendfile(fd, tmp.fileno(), sent, size - sent)
        if not n:
            break
        sent += n
