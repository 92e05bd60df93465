"""Per-flow counters in numpy arrays, with no Python work per frame or per flow while counting.

:class:`FlowCounter` is the array twin of :class:`core.capture.flows.FlowTable`: the same flow keys
``(vni, inner_src, inner_dst, proto)``, the same totals and the same current rates (the last
``window`` seconds in ``slots`` time buckets), so ``flows()`` of both are equal on the same frames.

A flow key is packed into five 64-bit columns (:func:`pack_ip_keys`): ``c0`` = kind << 40 | IP
protocol << 24 | VNI, then the addresses (IPv4/ARP: ``c1`` = src << 32 | dst; IPv6: ``c1..c4`` =
src high, src low, dst high, dst low). Keys the packed form cannot hold (malformed and non-VXLAN
frames, non-IP inner frames, whose key holds text) get kind 0 and ``c1`` = the index of the text
key in a small side list; they never equal a packed key, so nothing merges that should not.

Rows find their flow id through an open-addressing hash table probed for a whole batch at once
(gathers and compares over the rows still unresolved, a few rounds); ids are stable, so counters are
plain arrays indexed by id and a batch adds to them with ``bincount``/``add.at``. The recent buckets
are a ring of ``slots`` cells per flow tagged with their bucket number. Arrays grow with the flows
actually met (doubling), zero-filled (untouched memory costs nothing until used).
"""
from __future__ import annotations

import json
import socket
from collections.abc import Iterable

import numpy as np

from core.capture.decode import ETH_ARP, MALFORMED, NOT_VXLAN, proto_name
from core.capture.flows import ANY, DEFAULT_SLOTS, DEFAULT_WINDOW, FlowKey, _group, _stat
from core.model import FlowStat, Frame, Names

KIND_TEXT, KIND_ARP, KIND_IPV4, KIND_IPV6 = 0, 1, 4, 6
NCOLS = 5
_U64 = np.uint64
_MIX = (_U64(0x9E3779B97F4A7C15), _U64(0xC2B2AE3D27D4EB4F), _U64(0x165667B19E3779F9), _U64(0x85EBCA77C2B2AE63),
        _U64(0x27D4EB2F165667C5))
_FIN = _U64(0xFF51AFD7ED558CCD)
_TAG_BIAS = 1 << 62             # a ring cell's tag is its bucket + this: 0 (fresh zeroed memory) = empty
_OCTETS = np.array([str(i) for i in range(256)])
_PROTO4 = [proto_name(4, i) for i in range(256)]
_PROTO6 = [proto_name(6, i) for i in range(256)]
_PNUM = {**{(4, n): i for i, n in enumerate(_PROTO4)}, **{(6, n): i for i, n in enumerate(_PROTO6)}}
del ETH_ARP


def pack_ip_keys(kind: np.ndarray, pnum: np.ndarray, vni: np.ndarray, src: np.ndarray, dst: np.ndarray,
                 v6: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Key columns for rows of kind 4 (IPv4), 1 (ARP) or 6 (IPv6).

    ``src``/``dst`` are the IPv4 addresses as integers (ignored for IPv6 rows); ``v6`` the four 64-bit
    halves (src high, src low, dst high, dst low) for every row (zeros on other rows), or None when
    no row is IPv6.
    """
    c0 = (kind.astype(_U64) << _U64(40)) | (pnum.astype(_U64) << _U64(24)) | vni.astype(_U64)
    if v6 is None:
        z = np.zeros(len(c0), dtype=_U64)
        return [c0, (src.astype(_U64) << _U64(32)) | dst.astype(_U64), z, z, z]
    six = kind == KIND_IPV6
    c1 = np.where(six, v6[0], (src.astype(_U64) << _U64(32)) | dst.astype(_U64))
    return [c0, c1, v6[1], v6[2], v6[3]]


def _hash(cols: list[np.ndarray], wide: bool) -> np.ndarray:
    h = cols[0] * _MIX[0]
    for c, m in zip(cols[1:] if wide else cols[1:2], _MIX[1:]):
        h ^= c * m
    h ^= h >> _U64(33)
    h *= _FIN
    h ^= h >> _U64(29)
    return h


class FlowCounter:
    """Flows counted from packed key columns (``add_keys``) or from decoded Frames (``add_frames``)."""

    def __init__(self, window: float = DEFAULT_WINDOW, slots: int = DEFAULT_SLOTS, capacity: int = 1024) -> None:
        if window <= 0 or slots < 1:
            raise ValueError("flow rate window must be > 0 seconds with at least one slot")
        self.window, self.slots = float(window), int(slots)
        self.step = self.window / self.slots
        self.frames = self.malformed = self.not_vxlan = 0
        self.newest_bucket: int | None = None
        self.newest_ts: float | None = None
        self._n = 0
        cap = max(16, int(capacity))
        self._keys = [np.zeros(cap, dtype=_U64) for _ in range(NCOLS)]
        self._packets = np.zeros(cap, dtype=np.int64)
        self._bytes = np.zeros(cap, dtype=np.int64)
        self._rpk = np.zeros(cap * self.slots, dtype=np.int64)       # ring cells: flow id * slots + bucket % slots
        self._rby = np.zeros(cap * self.slots, dtype=np.int64)
        self._rtag = np.zeros(cap * self.slots, dtype=np.int64)
        size = 1 << max(6, (4 * cap - 1).bit_length())
        self._slot = np.zeros(size, dtype=np.int64)             # flow id + 1; 0 = empty
        self._claim = np.zeros(size, dtype=np.int64)
        self._text: list[tuple] = []                 # kind-0 keys, by index
        self._text_index: dict[tuple, int] = {}
        self._wide = False                           # some key uses columns 2..4 (IPv6)

    def __len__(self) -> int:
        return self._n

    # --- counting ------------------------------------------------------------------------------------

    def add_keys(self, cols: list[np.ndarray], length: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Count rows given as packed key columns, inner lengths and timestamps; returns their flow ids."""
        n = len(length)
        if not n:
            return np.zeros(0, dtype=np.int64)
        wide = bool(cols[2].any() or cols[3].any() or cols[4].any())
        self._wide |= wide
        ids = self._lookup(cols, wide)
        self._count(ids, np.asarray(length, dtype=np.int64), np.asarray(ts, dtype=np.float64))
        self.frames += n
        return ids

    def add_frames(self, frames: Iterable[Frame]) -> None:
        """Count decoded Frames (the per-frame decoder's output; any kind, malformed ones included)."""
        k0: list[int] = []
        k1: list[int] = []
        k2: list[int] = []
        k3: list[int] = []
        k4: list[int] = []
        lens: list[int] = []
        tss: list[float] = []
        for f in frames:
            key = _frame_key(f)
            if key is None:
                tk = (f.vni, f.inner_src, f.inner_dst, f.proto)
                i = self._text_index.get(tk)
                if i is None:
                    i = self._text_index[tk] = len(self._text)
                    self._text.append(tk)
                key = (0, i, 0, 0, 0)
            k0.append(key[0])
            k1.append(key[1])
            k2.append(key[2])
            k3.append(key[3])
            k4.append(key[4])
            lens.append(f.length)
            tss.append(f.ts)
            if f.error is not None:
                if f.proto == NOT_VXLAN:
                    self.not_vxlan += 1
                else:
                    self.malformed += 1
        if lens:
            self.add_keys([np.array(k, dtype=_U64) for k in (k0, k1, k2, k3, k4)], np.array(lens, dtype=np.int64),
                          np.array(tss, dtype=np.float64))

    def _count(self, ids: np.ndarray, length: np.ndarray, ts: np.ndarray) -> None:
        g = self._n
        if 4 * len(ids) < g:                         # few rows, many flows: add at the rows' flows only
            np.add.at(self._packets, ids, 1)
            np.add.at(self._bytes, ids, length)
        else:
            self._packets[:g] += np.bincount(ids, minlength=g)
            self._bytes[:g] += np.bincount(ids, weights=length, minlength=g).astype(np.int64)
        b = np.floor(ts / self.step).astype(np.int64)
        top = int(b.max())
        if self.newest_bucket is None or top > self.newest_bucket:
            self.newest_bucket = top
        t = float(ts.max())
        if self.newest_ts is None or t > self.newest_ts:
            self.newest_ts = t
        m = b > self.newest_bucket - self.slots          # older rows can never be in a window again
        if not m.all():
            ids, b, length = ids[m], b[m], length[m]
        cell = ids * self.slots + b % self.slots
        tag, bt = self._rtag, b + _TAG_BIAS
        old = tag[cell]
        np.maximum.at(tag, cell, bt)
        new = tag[cell]
        moved = cell[new != old]
        if len(moved):
            self._rpk[moved] = 0
            self._rby[moved] = 0
        keep = bt == new
        np.add.at(self._rpk, cell[keep], 1)
        np.add.at(self._rby, cell[keep], length[keep])

    def state(self, copy: bool = True) -> dict:
        """Everything counted, as plain arrays and lists (to send to another process: :meth:`merge_state`);
        ``copy=False``: views of this counter's arrays (valid while it is not counting)."""
        g, w = self._n, self.slots
        c = np.copy if copy else np.asarray
        return {"keys": [c(k[:g]) for k in self._keys], "packets": c(self._packets[:g]),
                "bytes": c(self._bytes[:g]), "rpk": c(self._rpk[:g * w]), "rby": c(self._rby[:g * w]),
                "rtag": c(self._rtag[:g * w]), "text": list(self._text), "frames": self.frames,
                "malformed": self.malformed, "not_vxlan": self.not_vxlan, "newest_bucket": self.newest_bucket,
                "newest_ts": self.newest_ts, "window": self.window, "slots": self.slots}

    def merge_state(self, st: dict) -> None:
        """Add another counter's :meth:`state` (same window and slots) to this one."""
        if (st["window"], st["slots"]) != (self.window, self.slots):
            raise ValueError("flow counters with different rate windows cannot be merged")
        keys, g, w = [k.copy() for k in st["keys"]], len(st["packets"]), self.slots
        if g:
            kind = keys[0] >> _U64(40)
            for i in np.flatnonzero(kind == KIND_TEXT).tolist():
                tk = st["text"][int(keys[1][i])]
                j = self._text_index.get(tk)
                if j is None:
                    j = self._text_index[tk] = len(self._text)
                    self._text.append(tk)
                keys[1][i] = j
            ids = self._lookup(keys, bool((kind == KIND_IPV6).any()))
            self._packets[ids] += st["packets"]
            self._bytes[ids] += st["bytes"]
            pc = (ids[:, None] * w + np.arange(w)).ravel()
            pt, ct = self._rtag[pc], st["rtag"]
            take = ct > pt
            same = (ct == pt) & (ct != 0)
            self._rtag[pc[take]] = ct[take]
            self._rpk[pc[take]] = st["rpk"][take]
            self._rby[pc[take]] = st["rby"][take]
            self._rpk[pc[same]] += st["rpk"][same]
            self._rby[pc[same]] += st["rby"][same]
        self.frames += st["frames"]
        self.malformed += st["malformed"]
        self.not_vxlan += st["not_vxlan"]
        for k in ("newest_bucket", "newest_ts"):
            v = st[k]
            if v is not None and (getattr(self, k) is None or v > getattr(self, k)):
                setattr(self, k, v)

    # --- the hash table ------------------------------------------------------------------------------

    def _lookup(self, cols: list[np.ndarray], wide: bool) -> np.ndarray:
        n = len(cols[0])
        self._reserve_table(self._n + n)
        ids = np.empty(n, dtype=np.int64)
        ncmp = NCOLS if wide else 2
        mask = len(self._slot) - 1
        h = _hash(cols, self._wide)
        pos = (h & _U64(mask)).astype(np.int64)
        idx = np.arange(n)
        keys, slot, claim = self._keys, self._slot, self._claim
        while len(idx):
            sid = slot[pos] - 1
            occ = sid >= 0
            done = np.zeros(len(idx), dtype=bool)
            advance = np.zeros(len(idx), dtype=bool)
            oi = np.flatnonzero(occ)
            if len(oi):
                so, ro = sid[oi], idx[oi]
                eq = keys[0][so] == cols[0][ro]
                for c in range(1, ncmp):
                    eq &= keys[c][so] == cols[c][ro]
                ids[ro[eq]] = so[eq]
                done[oi[eq]] = True
                advance[oi[~eq]] = True
            ei = np.flatnonzero(~occ)
            if len(ei):
                pe = pos[ei]
                claim[pe] = ei
                win = ei[claim[pe] == ei]
                new = np.arange(self._n, self._n + len(win))
                self._grow_flows(self._n + len(win))
                keys = self._keys
                self._n += len(win)
                rows = idx[win]
                slot[pos[win]] = new + 1
                for c in range(NCOLS):
                    keys[c][new] = cols[c][rows]
                ids[rows] = new
                done[win] = True
            pos = np.where(advance, (pos + 1) & mask, pos)
            left = ~done
            idx, pos = idx[left], pos[left]
        return ids

    def _grow_flows(self, need: int) -> None:
        """Room for ``need`` flows in the per-flow arrays (doubling)."""
        cap = len(self._packets)
        if need > cap:
            new = max(need, 2 * cap)
            self._keys = [_grow(k, new) for k in self._keys]
            self._packets = _grow(self._packets, new)
            self._bytes = _grow(self._bytes, new)
            self._rpk = _grow(self._rpk, new * self.slots)
            self._rby = _grow(self._rby, new * self.slots)
            self._rtag = _grow(self._rtag, new * self.slots)

    def _reserve_table(self, need: int) -> None:
        """A slot table at most half full with ``need`` flows (rehashed to 1/8 full when it is not)."""
        if 2 * need > len(self._slot):
            size = 1 << (8 * need - 1).bit_length()
            self._slot = np.zeros(size, dtype=np.int64)
            self._claim = np.zeros(size, dtype=np.int64)
            self._wide = self._wide or bool(self._n and any(k[:self._n].any() for k in self._keys[2:]))
            self._place(np.arange(self._n))

    def _place(self, fids: np.ndarray) -> None:
        """Put existing (distinct) flow ids into the slot table."""
        mask = len(self._slot) - 1
        cols = [k[fids] for k in self._keys]
        pos = (_hash(cols, self._wide) & _U64(mask)).astype(np.int64)
        idx = np.arange(len(fids))
        while len(idx):
            empty = self._slot[pos] == 0
            ei = np.flatnonzero(empty)
            self._claim[pos[ei]] = ei
            win = ei[self._claim[pos[ei]] == ei]
            self._slot[pos[win]] = fids[idx[win]] + 1
            placed = np.zeros(len(idx), dtype=bool)
            placed[win] = True
            pos = np.where(placed, pos, np.where(empty, pos, (pos + 1) & mask))
            idx, pos = idx[~placed], pos[~placed]

    # --- results -------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {"frames": self.frames, "malformed": self.malformed, "not_vxlan": self.not_vxlan, "flows": self._n}

    def bucket(self, ts: float) -> int:
        return int(np.floor(ts / self.step))

    def columns(self, now: float | None = None) -> FlowColumns:
        """Every flow as arrays, most bytes first (ties: packets, then by key), rates at ``now``."""
        g = self._n
        end = self.bucket(now) if now is not None else self.newest_bucket
        first = (end if end is not None else 0) - self.slots + _TAG_BIAS
        tag = self._rtag[:g * self.slots].reshape(g, self.slots)
        live = tag > first
        pk = (self._rpk[:g * self.slots].reshape(g, self.slots) * live).sum(axis=1)
        by = (self._rby[:g * self.slots].reshape(g, self.slots) * live).sum(axis=1)
        c0, c1 = self._keys[0][:g], self._keys[1][:g]
        kind = (c0 >> _U64(40)).astype(np.int64)
        pnum = ((c0 >> _U64(24)) & _U64(0xFF)).astype(np.int64)
        vni = (c0 & _U64(0xFFFFFF)).astype(np.int64)
        v4 = np.flatnonzero((kind == KIND_IPV4) | (kind == KIND_ARP))
        v6 = np.flatnonzero(kind == KIND_IPV6)
        tx = np.flatnonzero(kind == KIND_TEXT)
        texts = [self._text[i] for i in c1[tx].tolist()]
        sp: list[tuple] = []                          # (rows, distinct texts, each row's index in them)
        dp: list[tuple] = []
        pp: list[tuple] = []
        if len(v4):
            sp.append((v4, *_ipv4_distinct(c1[v4] >> _U64(32))))
            dp.append((v4, *_ipv4_distinct(c1[v4] & _U64(0xFFFFFFFF))))
            u, inv = np.unique(np.where(kind[v4] == KIND_ARP, 256, pnum[v4]), return_inverse=True)
            pp.append((v4, [_PROTO4[c] if c < 256 else "ARP" for c in u.tolist()], inv.reshape(-1)))
        if len(v6):
            hi_s, lo_s, hi_d, lo_d = (k[:g][v6] for k in self._keys[1:])
            sp.append((v6, *_ipv6_distinct(hi_s, lo_s)))
            dp.append((v6, *_ipv6_distinct(hi_d, lo_d)))
            u, inv = np.unique(pnum[v6], return_inverse=True)
            pp.append((v6, [_PROTO6[c] for c in u.tolist()], inv.reshape(-1)))
        if len(tx):
            at = np.arange(len(tx))
            sp.append((tx, [k[1] for k in texts], at))
            dp.append((tx, [k[2] for k in texts], at))
            pp.append((tx, [k[3] for k in texts], at))
        src, srank = _texts(sp, g)
        dst, drank = _texts(dp, g)
        proto, prank = _texts(pp, g)
        vnis = vni.astype(object)
        vkey = vni.copy()
        if len(tx):
            vnis[tx] = [k[0] for k in texts]
            vkey[tx] = [-1 if k[0] is None else k[0] for k in texts]
        packets, nbytes = self._packets[:g], self._bytes[:g]
        order = _flow_order(nbytes, packets, vkey, srank, drank, prank)
        return FlowColumns(vnis[order], src[order], dst[order], proto[order], packets[order], nbytes[order],
                           pk[order] / self.window, by[order] * 8 / self.window)

    def flows(self, names: Names | None = None, now: float | None = None) -> list[FlowStat]:
        """The same list :meth:`core.capture.flows.FlowTable.flows` gives for the same frames."""
        c = self.columns(now)
        return [_stat((v, s, d, p), pk, by, pps, bps, names) for v, s, d, p, pk, by, pps, bps in
                zip(c.vni.tolist(), c.src.tolist(), c.dst.tolist(), c.proto.tolist(), c.packets.tolist(),
                    c.bytes.tolist(), c.pps.tolist(), c.bps.tolist())]

    def vni_totals(self, names: Names | None = None, now: float | None = None) -> list[FlowStat]:
        return _group(self.flows(names, now), lambda s: (s.vni, ANY, ANY, ANY), names)

    def top_talkers(self, n: int = 10, names: Names | None = None, now: float | None = None) -> list[FlowStat]:
        return _group(self.flows(names, now), lambda s: (s.vni, s.inner_src, ANY, ANY), names)[:n]


def _pack(keys: list[np.ndarray]) -> np.ndarray | None:
    """Non-negative integer keys packed into one int64 that sorts as they do together (first key most
    significant), or None when they need more than 63 bits."""
    widths = [int(k.max()).bit_length() if len(k) else 0 for k in keys]
    if sum(widths) > 63:
        return None
    out = np.zeros(len(keys[0]), dtype=np.int64)
    for k, w in zip(keys, widths):
        out = (out << w) | k
    return out


def _flow_order(nbytes, packets, vkey, srank, drank, prank) -> np.ndarray:
    """The order of :meth:`FlowCounter.columns`: most bytes, most packets, then VNI (-1 for none) and the
    key's texts by rank: ``np.lexsort((prank, drank, srank, vkey, -packets, -nbytes))``, done as two
    sorts of packed keys when they fit in 63 bits (a few times faster at 100k flows)."""
    minor = _pack([vkey + 1, srank, drank, prank])
    major = _pack([nbytes.max() - nbytes, packets.max() - packets]) if len(nbytes) else None
    if minor is None or major is None:
        return np.lexsort((prank, drank, srank, vkey, -packets, -nbytes))
    first = np.argsort(minor, kind="stable")
    return first[np.argsort(major[first], kind="stable")]


def _texts(parts: list[tuple], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts of ``n`` rows given in parts ``(rows, distinct texts, each row's index in them)``: (an object
    array of the texts, each row's rank in the sorted texts of all parts: sorting by rank sorts by text)."""
    obj = np.empty(n, dtype=object)
    rank = np.zeros(n, dtype=np.int64)
    if not parts:
        return obj, rank
    every = np.concatenate([np.asarray(d, dtype=str) for _, d, _ in parts])
    _, ginv = np.unique(every, return_inverse=True)
    ginv = ginv.reshape(-1)
    at = 0
    for rows, distinct, inv in parts:
        listed = distinct.tolist() if isinstance(distinct, np.ndarray) else list(distinct)
        obj[rows] = np.asarray(listed + [None], dtype=object)[:-1][inv]
        rank[rows] = ginv[at + inv]
        at += len(distinct)
    return obj, rank


class FlowColumns:
    """Flows as parallel arrays, in output order (see :meth:`FlowCounter.columns`)."""

    __slots__ = ("vni", "src", "dst", "proto", "packets", "bytes", "pps", "bps")

    def __init__(self, vni, src, dst, proto, packets, nbytes, pps, bps) -> None:
        self.vni, self.src, self.dst, self.proto = vni, src, dst, proto
        self.packets, self.bytes, self.pps, self.bps = packets, nbytes, pps, bps

    def __len__(self) -> int:
        return len(self.packets)

    def json_lines(self, names: Names | None = None) -> list[str]:
        """One JSON object per flow, exactly what ``json.dumps(flow_json(stat))`` gives for each.

        Flow keys are text this program made from numbers (addresses, protocol names), so they are
        put between quotes as they are; names (from the cluster: hostile) go through ``json.dumps``.
        """
        vni = ["null" if v is None else v for v in self.vni.tolist()] if _has_none(self.vni) else self.vni.tolist()
        pps, bps = _round3_repr(self.pps), _round3_repr(self.bps)
        cols = (vni, self.src.tolist(), self.dst.tolist(), self.proto.tolist(), self.packets.tolist(),
                self.bytes.tolist(), pps, bps)
        if names is None or not (names.networks or names.containers):
            return [f'{{"vni": {v}, "network": null, "inner_src": "{s}", "inner_dst": "{d}", "src_name": null, '
                    f'"dst_name": null, "proto": "{p}", "packets": {pk}, "bytes": {by}, "pps": {a}, "bps": {b}}}\n'
                    for v, s, d, p, pk, by, a, b in zip(*cols)]
        nets, conts = names.networks, names.containers
        js: dict[object, str] = {}

        def q(x) -> str:
            r = js.get(x)
            if r is None:
                r = js[x] = json.dumps(x)
            return r
        return [f'{{"vni": {v}, "network": {q(nets.get(v) if v != "null" else None)}, "inner_src": "{s}", '
                f'"inner_dst": "{d}", "src_name": {q(conts.get(s))}, "dst_name": {q(conts.get(d))}, "proto": "{p}", '
                f'"packets": {pk}, "bytes": {by}, "pps": {a}, "bps": {b}}}\n'
                for v, s, d, p, pk, by, a, b in zip(*cols)]


def _has_none(a: np.ndarray) -> bool:
    return a.dtype == object and any(v is None for v in a.tolist())


def _round3_repr(x: np.ndarray) -> list[str]:
    """``repr(round(v, 3))`` of each value (as ``json.dumps`` writes it), computed once per distinct value."""
    if not len(x):
        return []
    u, inv = np.unique(x, return_inverse=True)
    text = np.array([repr(round(v, 3)) for v in u.tolist()], dtype=object)
    return text[inv].tolist()


def _frame_key(f: Frame) -> tuple[int, int, int, int, int] | None:
    """The packed key of a decoded frame, or None when its key is text (see the module docstring)."""
    if f.error is not None or f.vni is None:
        return None
    src, dst, proto = f.inner_src, f.inner_dst, f.proto
    try:
        if "." in src and ":" not in src:
            fam, kind = 4, KIND_ARP if proto == "ARP" else KIND_IPV4
            pnum = 0 if kind == KIND_ARP else _PNUM.get((4, proto))
            s = int.from_bytes(socket.inet_aton(src), "big")
            d = int.from_bytes(socket.inet_aton(dst), "big")
            if pnum is None or socket.inet_ntoa(s.to_bytes(4, "big")) != src or \
                    socket.inet_ntoa(d.to_bytes(4, "big")) != dst:
                return None
            return (kind << 40 | pnum << 24 | f.vni, s << 32 | d, 0, 0, 0)
        if ":" in src and proto != "ARP":
            fam = 6
            pnum = _PNUM.get((fam, proto))
            sb = socket.inet_pton(socket.AF_INET6, src)
            db = socket.inet_pton(socket.AF_INET6, dst)
            if pnum is None or socket.inet_ntop(socket.AF_INET6, sb) != src or \
                    socket.inet_ntop(socket.AF_INET6, db) != dst:
                return None
            return (KIND_IPV6 << 40 | pnum << 24 | f.vni, int.from_bytes(sb[:8], "big"),
                    int.from_bytes(sb[8:], "big"), int.from_bytes(db[:8], "big"), int.from_bytes(db[8:], "big"))
    except (OSError, ValueError):
        return None
    return None


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=a.dtype)
    out[:len(a)] = a
    return out


def _ipv4_distinct(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dotted quads of the distinct 32-bit integers of ``a`` (a str array), and each value's index in them."""
    u, inv = np.unique(a, return_inverse=True)
    o = [_OCTETS[((u >> _U64(s)) & _U64(255)).astype(np.int64)] for s in (24, 16, 8, 0)]
    t = np.strings.add(np.strings.add(np.strings.add(np.strings.add(np.strings.add(np.strings.add(
        o[0], "."), o[1]), "."), o[2]), "."), o[3])
    return t, inv.reshape(-1)


def _ipv4_text(a: np.ndarray) -> np.ndarray:
    """Dotted quads of 32-bit integers (distinct values formatted once), an object array."""
    t, inv = _ipv4_distinct(a)
    return t.astype(object)[inv]


def _ipv6_distinct(hi: np.ndarray, lo: np.ndarray) -> tuple[list[str], np.ndarray]:
    """IPv6 texts of the distinct (high, low) 64-bit halves, and each row's index in them."""
    order = np.lexsort((lo, hi))
    sh, sl = hi[order], lo[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sh[1:] != sh[:-1]) | (sl[1:] != sl[:-1])
    inv = np.empty(len(order), dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    ntop, af = socket.inet_ntop, socket.AF_INET6
    return [ntop(af, h.to_bytes(8, "big") + w.to_bytes(8, "big"))
            for h, w in zip(sh[new].tolist(), sl[new].tolist())], inv


def _ipv6_text(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """IPv6 text of (high, low) 64-bit halves (distinct addresses formatted once), an object array."""
    text, inv = _ipv6_distinct(hi, lo)
    return np.array(text + [""], dtype=object)[:-1][inv]


def flow_key(stat: FlowStat) -> FlowKey:
    return (stat.vni, stat.inner_src, stat.inner_dst, stat.proto)


__all__ = ["FlowCounter", "FlowColumns", "pack_ip_keys", "MALFORMED"]
