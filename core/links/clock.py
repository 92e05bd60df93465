"""Clock offsets between nodes, from the minimum one-way delays seen in both directions (as NTP does).

A frame a→b sent at ``t1`` (a's clock) and seen at ``t2`` (b's clock) gives ``t2 - t1 = delay_ab + θ``,
θ being b's clock minus a's; the way back gives ``t4 - t3 = delay_ba - θ``. With the smallest of each
(the least queued frames), ``θ = ((t2 - t1) - (t4 - t3)) / 2``, exact when the two least delays are
equal, and off by at most half their sum otherwise: that half-sum is the uncertainty reported with every
delay the offset is removed from. With traffic one way only there is no estimate: delays are reported
raw (a negative raw delay still proves the receiver's clock is behind).
"""
from __future__ import annotations

from dataclasses import dataclass

OFF_THRESHOLD = 0.001       # seconds: an offset beyond its uncertainty by more than this is "off"


@dataclass(frozen=True)
class Offset:
    """b's clock minus a's (seconds) and the half-width of the interval it lies in."""

    a: str
    b: str
    theta: float
    uncertainty: float

    @property
    def off(self) -> bool:
        return abs(self.theta) > self.uncertainty + OFF_THRESHOLD


def estimate(a: str, b: str, min_ab: float | None, min_ba: float | None) -> Offset | None:
    """The offset of b's clock against a's from the least raw delays a→b and b→a; None with one missing."""
    if min_ab is None or min_ba is None:
        return None
    return Offset(a, b, (min_ab - min_ba) / 2, max(0.0, (min_ab + min_ba) / 2))


def offsets(nodes: list[str], mins: dict[tuple[str, str], float]) -> dict[tuple[str, str], Offset]:
    """Every estimable offset, both orientations: ``result[(a, b)].theta`` is b's clock minus a's."""
    out: dict[tuple[str, str], Offset] = {}
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            o = estimate(a, b, mins.get((a, b)), mins.get((b, a)))
            if o is not None:
                out[(a, b)] = o
                out[(b, a)] = Offset(b, a, -o.theta, o.uncertainty)
    return out


def _ms(x: float) -> str:
    return f"{x * 1000:.3f} ms"


def clock_notes(nodes: list[str], mins: dict[tuple[str, str], float],
                est: dict[tuple[str, str], Offset]) -> list[str]:
    """Sentences about clocks that look off: a node whose offset to every other node is off while those
    others agree, else each disagreeing pair; and receivers whose clock is provably behind (one-way)."""
    notes: list[str] = []
    bad = {(a, b) for (a, b), o in est.items() if a < b and o.off}
    named: set[str] = set()
    for n in nodes:
        mine = [(a, b) for (a, b) in est if a < b and n in (a, b)]
        others = [(a, b) for (a, b) in est if a < b and n not in (a, b)]
        if mine and all(p in bad for p in mine) and others and not any(p in bad for p in others):
            ref = next(m for p in mine for m in p if m != n)
            o = est[(ref, n)]
            notes.append(f"{n}'s clock looks off: {_ms(abs(o.theta))} {'ahead of' if o.theta > 0 else 'behind'} "
                         f"{ref}'s (± {_ms(o.uncertainty)}); one-way delays have it removed")
            named.add(n)
    for a, b in sorted(bad):
        if a in named or b in named:
            continue
        o = est[(a, b)]
        notes.append(f"{a} and {b} clocks differ by {_ms(abs(o.theta))} (± {_ms(o.uncertainty)}): "
                     f"{b}'s is {'ahead' if o.theta > 0 else 'behind'}; one-way delays have it removed")
    for (a, b), m in sorted(mins.items()):
        if (a, b) not in est and m < 0:
            notes.append(f"{b}'s clock is at least {_ms(-m)} behind {a}'s (frames arrive before they leave); "
                         f"no traffic {b}→{a} to estimate the offset")
    return notes
