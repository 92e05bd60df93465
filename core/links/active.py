"""Light probe traffic for `links --active`: pings between the probe containers of idle pairs.

One ``ping -c 3 -i 0.2`` per (src, dst) from ``probe-<src>`` to ``probe-<dst>``'s overlay address
(:class:`core.dockerd.probes.Probes`); nodes without a running probe are named in a notice instead.
"""
from __future__ import annotations

import asyncio

from core.dockerd.probes import Probes


class ActivePinger:
    """Callable: ``await pinger([(src, dst), ...])`` -> notices (probes missing, pings failing)."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes
        self._told: set[str] = set()

    async def __call__(self, pairs: list[tuple[str, str]]) -> list[str]:
        running = await self.probes.running()
        per_src: dict[str, list[tuple[str, str, str]]] = {}
        notices = []
        for a, b in pairs:
            ip = running.get(b, ("", None))[1]
            if a not in running or not ip:
                gone = a if a not in running else b
                if gone not in self._told:
                    self._told.add(gone)
                    notices.append(f"--active: no probe container runs on {gone} (start them with the runbook)")
                continue
            per_src.setdefault(a, []).append((b, ip, "address"))
        results = await asyncio.gather(*(self.probes.ping_from(a, ts) for a, ts in per_src.items()))
        for r in (r for batch in results for r in batch):
            if r.error and f"{r.src}>{r.dst}" not in self._told:
                self._told.add(f"{r.src}>{r.dst}")
                notices.append(f"--active: ping {r.src} → {r.dst}: {r.error}")
        return notices
