"""`capture --read FILE --json` at batch speed: one JSON line per frame, from numpy columns.

For every frame the batch decoder (:func:`core.capture.batch._decode`) understands, the fields of
:func:`core.capture.format.frame_json` are computed as columns (addresses, MACs, ports and ICMP texts
formatted once per distinct value) and joined into the same text ``json.dumps(frame_json(frame))``
gives; every other frame (malformed, not VXLAN, rare shapes) is decoded by the per-frame decoder and
dumped as before. Lines come out in file order. The flows are counted on the way (for the summary).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from core.capture.batch import KIND_ARP, SPLIT_MIN, _Batch, _count_split, _decode, _v6_columns
from core.capture.decode import ICMP6_TYPES, ICMP_TYPES, TCP_FLAGS, VxlanDecoder
from core.capture.flowagg import _PROTO4, _PROTO6, KIND_IPV6, FlowCounter, _ipv4_text, _ipv6_text, pack_ip_keys
from core.capture.format import frame_json
from core.capture.records import CHUNK, CaptureFile, RecordBatch
from core.model import Names

_U64 = np.uint64
_MIX = _U64(0x9E3779B97F4A7C15)
_FLAGS = np.array([" [" + "".join(c for bit, c in TCP_FLAGS if fl & bit) + "]" for fl in range(256)], dtype=object)
_P4 = np.array(_PROTO4, dtype=object)
_P6 = np.array(_PROTO6, dtype=object)


def _icmp_text(p: int, t: int, code: int) -> str:
    name = (ICMP_TYPES if p == 1 else ICMP6_TYPES).get(t)
    return f"{name} (code {code})" if name and code else (name or f"type {t} code {code}")


def _distinct(values: np.ndarray, fmt) -> np.ndarray:
    """``fmt(v)`` for each value, computed once per distinct value; an object array."""
    u, inv = np.unique(values, return_inverse=True)
    return np.array([fmt(v) for v in u.tolist()] + [""], dtype=object)[:-1][inv.reshape(-1)]


def _mac_text(v: np.ndarray) -> np.ndarray:
    return _distinct(v, lambda x: x.to_bytes(6, "big").hex(":"))


def json_lines(rb: RecordBatch, port: int, decoder: VxlanDecoder, counter: FlowCounter,
               names: Names | None = None, node: str = "") -> list[str]:
    """The JSON lines of one batch's frames (in order), counting them into ``counter`` too."""
    n = len(rb)
    bt = _Batch(rb)
    ex: dict = {}
    ok, kind, pnum, vni, src, dst, ioff, length = _decode(bt, port, ex)
    out = np.empty(n, dtype=object)
    rows = np.flatnonzero(ok)
    if len(rows):
        out[rows] = _good_lines(bt, rows, kind, pnum, vni, src, dst, ioff, length, ex, names, node, counter)
    bad = np.flatnonzero(~ok)
    if len(bad):
        decode, buf, frames = decoder.decode, rb.buf, []
        lines = []
        for t, c, w, b in zip(bt.ts[bad].tolist(), bt.cap[bad].tolist(), bt.wire[bad].tolist(),
                              bt.base[bad].tolist()):
            f = decode(bytes(buf[b:b + c]), t, w, node)
            frames.append(f)
            lines.append(json.dumps(frame_json(f, names)) + "\n")
        out[bad] = lines
        counter.add_frames(frames)
    return out.tolist()


def _good_lines(bt: _Batch, rows: np.ndarray, kind, pnum, vni, src, dst, ioff, length, ex: dict,
                names: Names | None, node: str, counter: FlowCounter) -> list[str]:
    """Lines of the rows the batch decoder understood. Everything from ``outer_src`` to ``proto``
    depends on the flow, the outer addresses and UDP ports and the inner MACs: that text is made once
    per distinct combination in the batch."""
    k, p, v, io = kind[rows], pnum[rows], vni[rows], ioff[rows]
    sb = bt.sub(rows)
    cap = bt.cap[rows]
    v6cols = _v6_columns(bt, rows, k, io)
    fid = counter.add_keys(pack_ip_keys(k, p, v, src[rows], dst[rows], v6cols), length[rows], bt.ts[rows])
    off, v4o, udp = ex["off"][rows], ex["v4"][rows], ex["udp"][rows]
    nr = len(rows)
    outer = np.zeros((nr, 4), dtype=np.int64)           # outer addresses as numbers (v4: one column)
    o4 = np.flatnonzero(v4o)
    if len(o4):
        outer[o4, 0] = sb.sub(o4).u64(off[o4] + 12).astype(np.int64)
    o6 = np.flatnonzero(~v4o)
    if len(o6):
        s6 = sb.sub(o6)
        for j, o in enumerate((8, 16, 24, 32)):
            outer[o6, j] = s6.u64(off[o6] + o).astype(np.int64)
    sport, dport = sb.u16(udp), sb.u16(udp + 2)
    inner = udp + 16
    dmac = (sb.u32(inner) << 16) | sb.u16(inner + 4)
    smac = (sb.u16(inner + 6) << 32) | sb.u32(inner + 8)
    key = np.column_stack([fid, sport, dport, dmac, smac, v4o, outer])
    rep, inv = _group_rows(key)
    mid = _segments(bt, rows, rep, k, p, v, src, dst, v6cols, outer, v4o, sport, dport, dmac, smac, names)
    info, ikey = _info(sb, k, p, io, ex["l4"][rows], cap, src[rows], dst[rows])
    ln, wl = length[rows], bt.wire[rows]
    rep2, inv2 = _group_rows(np.column_stack([inv, ikey, ln, wl]))   # then the rest, once per distinct rest
    rest = [f'{m}"info": "{i}", "length": {a}, "wire_len": {b}, "error": null}}\n' for m, i, a, b in
            zip(mid[inv[rep2]].tolist(), info[rep2].tolist(), ln[rep2].tolist(), wl[rep2].tolist())]
    jnode = json.dumps(node)
    return [f'{{"ts": {ts!r}, "node": {jnode}, {r}' for ts, r in
            zip(bt.ts[rows].tolist(), np.array(rest + [""], dtype=object)[:-1][inv2].tolist())]


def _group_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of equal ``key`` rows grouped: (a row of each group, each row's group). A 64-bit hash of
    each row is sorted; the groups are then checked against the rows themselves, and on a hash
    collision the exact (slower) row-wise unique is used instead."""
    u = key.astype(_U64)
    h = np.zeros(len(u), dtype=_U64)
    for j in range(u.shape[1]):
        h = (h ^ u[:, j]) * _MIX
        h ^= h >> _U64(31)
    _, rep, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if not (key[rep][inv] == key).all():
        _, rep, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
    return rep, inv


def _segments(bt: _Batch, rows, rep, k, p, v, src, dst, v6cols, outer, v4o, sport, dport, dmac, smac,
              names: Names | None) -> np.ndarray:
    """The stretch of a line from ``outer_src`` to ``proto``, for each distinct combination (``rep``: a
    row of each; the outer source port is the same for a VXLAN sender's inner flow, so there are few)."""
    nets = names.networks if names else {}
    conts = names.containers if names else {}
    nodes = names.nodes if names else {}
    js: dict[object, str] = {None: "null"}

    def q(x) -> str:
        r = js.get(x)
        if r is None:
            r = js[x] = json.dumps(x)
        return r
    r4 = rep[v4o[rep]]
    r6 = rep[~v4o[rep]]
    osrc = np.empty(len(rows), dtype=object)
    odst = np.empty(len(rows), dtype=object)
    if len(r4):
        pair = outer[r4, 0].astype(_U64)
        osrc[r4] = _ipv4_text(pair >> _U64(32))
        odst[r4] = _ipv4_text(pair & _U64(0xFFFFFFFF))
    if len(r6):
        h = outer[r6].astype(_U64)
        osrc[r6] = _ipv6_text(h[:, 0], h[:, 1])
        odst[r6] = _ipv6_text(h[:, 2], h[:, 3])
    isrc = np.empty(len(rows), dtype=object)
    idst = np.empty(len(rows), dtype=object)
    six = k[rep] == KIND_IPV6
    a4, a6 = rep[~six], rep[six]
    if len(a4):
        isrc[a4] = _ipv4_text(src[rows][a4].astype(_U64))
        idst[a4] = _ipv4_text(dst[rows][a4].astype(_U64))
    if len(a6):
        assert v6cols is not None
        isrc[a6] = _ipv6_text(v6cols[0][a6], v6cols[1][a6])
        idst[a6] = _ipv6_text(v6cols[2][a6], v6cols[3][a6])
    kr = k[rep]
    prs = np.where(kr == KIND_ARP, "ARP", np.where(kr == KIND_IPV6, _P6[p[rep]], _P4[p[rep]])).tolist()
    sms, dms = _mac_text(smac[rep]).tolist(), _mac_text(dmac[rep]).tolist()
    seg = [f'"outer_src": "{a}", "outer_dst": "{b}", "outer_src_name": {q(nodes.get(a))}, '
           f'"outer_dst_name": {q(nodes.get(b))}, "outer_sport": {sp}, '
           f'"outer_dport": {dp}, "vni": {vn}, "network": {q(nets.get(vn))}, "inner_src": "{s}", '
           f'"inner_dst": "{d}", "src_name": {q(conts.get(s) or conts.get(sm))}, '
           f'"dst_name": {q(conts.get(d) or conts.get(dm))}, "inner_src_mac": "{sm}", '
           f'"inner_dst_mac": "{dm}", "proto": "{pr}", '
           for a, b, sp, dp, vn, s, d, sm, dm, pr in zip(osrc[rep].tolist(), odst[rep].tolist(), sport[rep].tolist(),
                                                          dport[rep].tolist(), v[rep].tolist(), isrc[rep].tolist(),
                                                          idst[rep].tolist(), sms, dms, prs)]
    return np.array(seg + [""], dtype=object)[:-1]


def _info(sb: _Batch, k, p, io, l4, cap, src, dst) -> tuple[np.ndarray, np.ndarray]:
    """The ``info`` text of each row: ports (and TCP flags), ICMP type and code, or ARP's sentence; and
    two numbers per row that are equal for rows of the same flow exactly when their texts are."""
    info = np.full(len(k), "", dtype=object)
    key = np.zeros((len(k), 2), dtype=np.int64)
    arp = k == KIND_ARP
    pl = np.where(arp, -1, p)
    tu = np.flatnonzero((pl == 6) | (pl == 17))
    if len(tu):
        st = sb.sub(tu)
        pp = (st.u16(l4[tu]) << 16) | st.u16(l4[tu] + 2)
        ports = _distinct(pp, lambda x: f"{x >> 16} > {x & 0xFFFF}")
        key[tu, 0] = (1 << 56) | pp
        tcp = np.flatnonzero((pl[tu] == 6) & (cap[tu] >= l4[tu] + 14))
        if len(tcp):
            flags = sb.sub(tu[tcp]).b(l4[tu][tcp] + 13)
            ports[tcp] = ports[tcp] + _FLAGS[flags]
            key[tu[tcp], 1] = flags + 1
        info[tu] = ports
    ic = np.flatnonzero((pl == 1) | (pl == 58))
    if len(ic):
        si = sb.sub(ic)
        code = (pl[ic] << 16) | (si.b(l4[ic]) << 8) | si.b(l4[ic] + 1)
        info[ic] = _distinct(code, lambda x: _icmp_text(x >> 16, (x >> 8) & 0xFF, x & 0xFF))
        key[ic, 0] = (2 << 56) | code
    ar = np.flatnonzero(arp)
    if len(ar):
        sa = sb.sub(ar)
        op = sa.u16(io[ar] + 6)
        hwv = (sa.u32(io[ar] + 8) << 16) | sa.u16(io[ar] + 12)
        hw = _mac_text(hwv)
        key[ar, 0] = (3 << 56) | op
        key[ar, 1] = hwv
        s4 = _ipv4_text(src[ar].astype(_U64))
        d4 = _ipv4_text(dst[ar].astype(_U64))
        info[ar] = [f"who-has {d} tell {s}" if o == 1 else f"{s} is-at {m}" if o == 2 else f"op {o}"
                    for o, s, d, m in zip(op.tolist(), s4.tolist(), d4.tolist(), hw.tolist())]
    return info, key


def head(rb: RecordBatch, k: int) -> RecordBatch:
    """The first ``k`` records of a batch."""
    return RecordBatch(rb.buf, rb.arr, rb.base[:k], rb.cap[:k], rb.wire[:k], rb.ts[:k])


def file_json_lines(batches: Iterator[RecordBatch], port: int, decoder: VxlanDecoder, counter: FlowCounter,
                    names: Names | None = None, count: int | None = None) -> Iterator[list[str]]:
    """JSON lines of a file's frames, a batch at a time, stopping after ``count`` frames if given."""
    done = 0
    for rb in batches:
        if count is not None and done + len(rb) > count:
            rb = head(rb, count - done)
        yield json_lines(rb, port, decoder, counter, names)
        done += len(rb)
        if count is not None and done >= count:
            return


def write_file_json(path: str, port: int, decoder: VxlanDecoder, counter: FlowCounter, out,
                    names: Names | None = None, count: int | None = None, workers: int | None = None,
                    split_min: int = SPLIT_MIN, chunk: int = CHUNK) -> str | None:
    """Write a file's frames as JSON lines to ``out``; returns the truncated-end sentence or None.

    Without ``count``, a big plain file is cut in two and the second half written by a forked
    process to a temp file, copied to ``out`` after the first half (see :func:`core.capture.batch.flows_from_pcap`).
    """
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) >= 2 else 1
    with CaptureFile(path, chunk) as cf:
        sp = cf.split(2, split_min) if count is None and workers >= 2 and hasattr(os, "fork") else None
        if sp is None:
            for lines in file_json_lines(cf.batches(), port, decoder, counter, names, count):
                out.writelines(lines)
        else:
            try:
                _count_split(cf, sp, port, counter, decoder, out=out,
                             each=lambda rb, c, d, sink: sink.writelines(json_lines(rb, port, d, c, names)))
            finally:
                sp.close()
    return cf.truncated
