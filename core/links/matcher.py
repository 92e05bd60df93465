"""Pair the two sightings of each VXLAN frame in a merged capture, and count per directed pair and VNI.

A frame captured on the node owning its outer source address is a sighting *leaving*; on the node
owning its outer destination, *arriving*; anywhere else it is ignored (a flooded frame). Sightings are
keyed by :func:`core.links.identity.frame_key` in a pending table bounded in size (oldest evicted and
counted, never counted lost) and in time: a leaving sighting with no arrival ``window`` seconds of stream
time later is lost. Stream time is the newest frame timestamp seen, so it keeps working on replays
and tolerates clock offsets smaller than the window. The per-frame path is one dict lookup and a few
list operations; expiry and eviction run once per batch.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence

from core.links.clock import clock_notes, offsets
from core.links.identity import frame_key
from core.links.stats import HISTORY, RESERVOIR, PairStats
from core.model import Frame, LinksSnapshot, LinkStat

WINDOW = 2.0
MAX_PENDING = 200_000

# pending entry fields
_TX, _RX, _ST, _SEQ, _NRX = 0, 1, 2, 3, 4


class LinkMatcher:
    """Feed it batches of merged, named frames (:meth:`add`); read :meth:`snapshot` whenever.

    ``nodes``: the captured nodes (pairs to other nodes cannot be matched and are counted ``unwatched``).
    """

    def __init__(self, nodes: Iterable[str], *, window: float = WINDOW, max_pending: int = MAX_PENDING,
                 seed: int = 0) -> None:
        self.nodes = list(dict.fromkeys(nodes))
        self._watched = frozenset(self.nodes)
        self.window, self.max_pending = window, max_pending
        self.pending: dict[int, list] = {}      # hash of the frame's identity -> entry
        self._order: deque[tuple[float, int]] = deque()
        self.stats: dict[tuple[str, str, int | None], PairStats] = {}
        self.rng = random.Random(seed)
        self.now = float("-inf")
        self.first = float("inf")
        self.frames = self.evicted = self.unwatched = self.foreign = self.tx_dups = 0

    def add(self, frames: Sequence[Frame]) -> None:
        """Match one batch of sightings (in the merged stream's order), then expire what is due."""
        if frames and self.first == float("inf"):
            self.first = min(f.ts for f in frames)
        pending, order, stats, watched = self.pending, self._order, self.stats, self._watched
        now, n = self.now, 0
        for f in frames:
            n += 1
            node, src, dst = f.node, f.outer_src_name, f.outer_dst_name
            if node == src:
                leaving = True
            elif node == dst:
                leaving = False
            else:
                self.foreign += 1
                continue
            vni = f.vni
            if src not in watched or dst not in watched or vni is None:
                self.unwatched += 1
                continue
            raw = f.raw
            if raw[12:15] == b"\x08\x00\x45" and len(raw) >= 50:     # frame_key's common shape, inlined
                key = hash(raw[18:20] + raw[26:36] + raw[46:49] + raw[50:98])
            else:
                k = frame_key(raw)
                if k is None:
                    continue
                key = hash(k)
            ts = f.ts
            if ts > now:
                now = ts
            e = pending.get(key)
            if e is None:
                st = stats.get((src, dst, vni))
                if st is None:
                    st = stats[(src, dst, vni)] = PairStats(src, dst, vni, self.rng)
                if leaving:
                    e = [ts, None, st, st.next_seq, 0]
                    st.next_seq += 1
                    st.count_sent(int(ts))
                else:
                    e = [None, ts, st, -1, 1]
                pending[key] = e
                order.append((ts, key))
            elif leaving:
                if e[_TX] is not None:
                    self.tx_dups += 1
                    continue
                st = e[_ST]
                e[_TX], e[_SEQ] = ts, st.next_seq
                st.next_seq += 1
                st.count_sent(int(ts))
                st.received += 1
                st.delay(e[_RX] - ts, int(ts))
            else:
                st = e[_ST]
                if e[_NRX]:
                    e[_NRX] += 1
                    st.duplicated += 1
                    continue
                e[_NRX], e[_RX] = 1, ts
                if e[_TX] is None:
                    continue
                st.received += 1
                seq = e[_SEQ]
                if seq < st.max_seq_rx:
                    st.reordered += 1
                else:
                    st.max_seq_rx = seq
                st.delay(ts - e[_TX], int(e[_TX]))
        self.frames += n
        self.now = now
        self._expire(now - self.window)
        while len(pending) > self.max_pending:
            ts, key = order.popleft()
            pending.pop(key, None)
            self.evicted += 1

    def _expire(self, cutoff: float) -> None:
        order, pending = self._order, self.pending
        while order and order[0][0] < cutoff:
            _, key = order.popleft()
            e = pending.pop(key, None)
            if e is None:
                continue
            if e[_TX] is None:
                e[_ST].rx_only += 1
            elif not e[_NRX]:
                e[_ST].count_lost(int(e[_TX]))

    def idle(self, seconds: float) -> None:
        """No frame came for ``seconds`` of wall-clock time: let stream time run on, so what waited
        for an arrival that never came is judged lost without needing more traffic."""
        if seconds > 0 and self.now != float("-inf"):
            self._expire(self.now + seconds - self.window)

    def finish(self, settle: float = 0.0) -> None:
        """The stream ended: judge every sighting older than ``settle`` seconds before the newest frame
        (0 for a complete recording; a live capture's last frames may still be on their way)."""
        self._expire(self.now - settle)

    def in_flight(self) -> int:
        """Pending sightings leaving with no arrival yet (not yet judged)."""
        return sum(1 for e in self.pending.values() if e[_TX] is not None and not e[_NRX])

    # --- reporting -----------------------------------------------------------------------------
    def snapshot(self, *, final: bool = False, notices: list[str] | None = None) -> LinksSnapshot:
        """Every ordered pair of the watched nodes, all VNIs together and per VNI, with clock offsets removed."""
        now = int(self.now) if self.now != float("-inf") else 0
        mins = self._min_delays(now)
        est = offsets(self.nodes, mins)
        per_vni = [self._row(st, est, now) for _, st in sorted(self.stats.items(), key=lambda kv: _order_key(kv[0]))]
        pairs = []
        for a in self.nodes:
            for b in self.nodes:
                if a != b:
                    group = [st for (s, d, _), st in self.stats.items() if s == a and d == b]
                    pairs.append(self._pair_row(a, b, group, est, now))
        span = max(0.0, self.now - self.first) if self.frames and self.first != float("inf") else 0.0
        return LinksSnapshot(nodes=list(self.nodes), pairs=pairs, per_vni=per_vni, span=span, frames=self.frames,
                             pending=len(self.pending), evicted=self.evicted,
                             in_flight=self.in_flight() if final else 0, unwatched=self.unwatched,
                             clock_notes=clock_notes(self.nodes, mins, est), notices=list(notices or []),
                             final=final)

    def _min_delays(self, now: int) -> dict[tuple[str, str], float]:
        """Least raw delay per directed node pair over the last minute (else over the whole run)."""
        recent: dict[tuple[str, str], float] = {}
        ever: dict[tuple[str, str], float] = {}
        for (s, d, _), st in self.stats.items():
            if st.n_delays:
                ever[(s, d)] = min(ever.get((s, d), st.min_delay), st.min_delay)
            for sec, slot in st.slots.items():
                if sec > now - HISTORY and slot[1]:
                    recent[(s, d)] = min(recent.get((s, d), slot[3]), slot[3])
        return {**ever, **recent}

    def _row(self, st: PairStats, est: dict, now: int) -> LinkStat:
        o = est.get((st.src, st.dst))
        theta = o.theta if o else 0.0
        p50, p99 = st.quantiles(theta)
        loss_h, delay_h = st.history(now, theta)
        return LinkStat(st.src, st.dst, st.vni, st.sent, st.received, st.lost, st.reordered, st.duplicated,
                        st.rx_only, _ms(p50), _ms(p99), _ms(st.max_delay - theta if st.n_delays else None),
                        _ms(o.theta) if o else None, _ms(o.uncertainty) if o else None,
                        loss_h, [_ms(x) for x in delay_h])

    def _pair_row(self, a: str, b: str, group: list[PairStats], est: dict, now: int) -> LinkStat:
        if len(group) == 1:
            row = self._row(group[0], est, now)
            row.vni = None
            return row
        o = est.get((a, b))
        theta = o.theta if o else 0.0
        row = LinkStat(a, b, None, offset_ms=_ms(o.theta) if o else None, uncertainty_ms=_ms(o.uncertainty) if o else None)
        if not group:
            row.loss_history, row.delay_history_ms = [None] * HISTORY, [None] * HISTORY
            return row
        for st in group:
            row.sent += st.sent
            row.received += st.received
            row.lost += st.lost
            row.reordered += st.reordered
            row.duplicated += st.duplicated
            row.rx_only += st.rx_only
        sample = _merged_sample(group, self.rng)
        if sample:
            n = len(sample)
            row.delay_p50_ms, row.delay_p99_ms = _ms(sample[n // 2] - theta), _ms(sample[min(n - 1, int(0.99 * n))] - theta)
            row.delay_max_ms = _ms(max(st.max_delay for st in group if st.n_delays) - theta)
        hists = [st.history(now, theta) for st in group]
        row.loss_history = [_loss_sum(group, now, i) for i in range(HISTORY)]
        row.delay_history_ms = [_ms(min((d for h in hists if (d := h[1][i]) is not None), default=None))
                                for i in range(HISTORY)]
        return row


def _loss_sum(group: list[PairStats], now: int, i: int) -> float | None:
    sec = now - HISTORY + 1 + i
    rx = lost = 0
    for st in group:
        s = st.slots.get(sec)
        if s:
            rx, lost = rx + s[1], lost + s[2]
    return lost / (rx + lost) if rx + lost else None


def _merged_sample(group: list[PairStats], rng: random.Random) -> list[float]:
    """A sample of the group's delays, each VNI weighted by how many delays it saw; sorted."""
    total = sum(st.n_delays for st in group)
    out: list[float] = []
    for st in group:
        if st.reservoir:
            k = max(1, round(RESERVOIR * st.n_delays / total))
            out += rng.sample(st.reservoir, min(k, len(st.reservoir)))
    return sorted(out)


def _order_key(k: tuple[str, str, int | None]) -> tuple[str, str, int]:
    return k[0], k[1], -1 if k[2] is None else k[2]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)
