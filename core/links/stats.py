"""Counters of one directed node pair on one VNI, in bounded memory.

Delays (receiver's timestamp minus sender's, in the two nodes' own clocks: the offset is removed at
report time, see :mod:`core.links.clock`) go to a fixed-size reservoir (Vitter's algorithm R: a
uniform sample of every delay seen) for the quantiles, plus exact min and max. The last minute is
kept per second (a ring of ``HISTORY`` slots) for sparklines. A pair's memory is fixed whatever the rate.
"""
from __future__ import annotations

import random

RESERVOIR = 2048
HISTORY = 60
BUCKETS = 64


class PairStats:
    """sent / received / lost / reordered / duplicated and raw one-way delays of one (src, dst, vni)."""

    __slots__ = ("src", "dst", "vni", "sent", "received", "lost", "reordered", "duplicated", "rx_only",
                 "next_seq", "max_seq_rx", "n_delays", "reservoir", "min_delay", "max_delay", "slots", "rng", "cur_sec", "cur")

    def __init__(self, src: str, dst: str, vni: int | None, rng: random.Random) -> None:
        self.src, self.dst, self.vni = src, dst, vni
        self.sent = self.received = self.lost = self.reordered = self.duplicated = self.rx_only = 0
        self.next_seq = 0                    # sequence numbers given to sightings at the source
        self.max_seq_rx = -1                 # highest sequence number received so far (reordering)
        self.n_delays = 0
        self.reservoir: list[float] = []
        self.min_delay = float("inf")
        self.max_delay = float("-inf")
        self.slots: dict[int, list] = {}     # second -> [sent, received, lost, min delay]
        self.rng = rng
        self.cur_sec, self.cur = -1, [0, 0, 0, 0.0]      # the slot last used (most sightings hit it again)

    def delay(self, d: float, second: int) -> None:
        """One matched frame's raw delay (seconds), sent during ``second``."""
        self.n_delays += 1
        if d < self.min_delay:
            self.min_delay = d
        if d > self.max_delay:
            self.max_delay = d
        res = self.reservoir
        if len(res) < RESERVOIR:
            res.append(d)
        else:
            j = int(self.rng.random() * self.n_delays)
            if j < RESERVOIR:
                res[j] = d
        s = self._slot(second)
        if s is not None:
            s[1] += 1
            if d < s[3]:
                s[3] = d

    def count_sent(self, second: int) -> None:
        self.sent += 1
        s = self._slot(second)
        if s is not None:
            s[0] += 1

    def count_lost(self, second: int) -> None:
        self.lost += 1
        s = self._slot(second)
        if s is not None:
            s[2] += 1

    def _slot(self, second: int) -> list | None:
        if second == self.cur_sec:
            return self.cur
        slots = self.slots
        s = slots.get(second)
        if s is None:
            if slots and second < max(slots) - BUCKETS:
                return None                  # older than the history: counted in the totals only
            s = slots[second] = [0, 0, 0, float("inf")]
            if len(slots) > BUCKETS:
                del slots[min(slots)]
        self.cur_sec, self.cur = second, s
        return s

    def quantiles(self, offset: float, qs: tuple[float, ...] = (0.5, 0.99)) -> list[float | None]:
        """Delay quantiles in seconds with ``offset`` (receiver clock minus sender clock) removed."""
        if not self.reservoir:
            return [None for _ in qs]
        xs = sorted(self.reservoir)
        n = len(xs)
        return [xs[min(n - 1, int(q * n))] - offset for q in qs]

    def history(self, now: int, offset: float) -> tuple[list[float | None], list[float | None]]:
        """Per second of the last ``HISTORY`` seconds up to ``now``: loss ratio and min delay (s), None when idle."""
        loss: list[float | None] = []
        delay: list[float | None] = []
        for sec in range(now - HISTORY + 1, now + 1):
            s = self.slots.get(sec)
            done = s[1] + s[2] if s else 0
            loss.append(s[2] / done if s and done else None)
            delay.append(s[3] - offset if s and s[1] else None)
        return loss, delay
