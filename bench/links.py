"""Benchmark: frames per second through the links matcher (core.links.matcher.LinkMatcher).

Builds SIGHTINGS (default 600,000; 30k frames/s of stream time) synthetic sightings
(tests/links_frames.py: real Ethernet/IPv4/UDP/VXLAN/Ethernet/IPv4/ICMP bytes, 3 nodes, 6 directed
flows, 2% loss on one pair, 1% duplicates, 1%
reordered, a 3 ms clock skew on one node), then feeds them to a fresh matcher in batches of 2,000 (the
capture's batch size) and times it by this process's CPU time (one core). Prints each of RUNS (3) runs
and the median, plus the matcher's peak pending table and its result for the lossy pair.

    .venv/bin/python bench/links.py [SIGHTINGS]
"""
from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from links_frames import Plan, sightings  # noqa: E402

from core.links.matcher import LinkMatcher  # noqa: E402

RUNS, BATCH = 3, 2000


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
    flows = [(a, b, 256) for a in ("n1", "n2", "n3") for b in ("n1", "n2", "n3") if a != b]
    per_flow = total // (2 * len(flows))
    plan = Plan(flows=flows, count=per_flow, gap=0.0002, loss={("n1", "n2"): 0.02}, dup=0.01, reorder=0.01,
                clock={"n3": 0.003})
    t0 = time.perf_counter()
    frames = sightings(plan)
    print(f"{len(frames):,} sightings built in {time.perf_counter() - t0:.1f} s "
          f"({per_flow:,} frames per flow, {len(flows)} flows, both ends)")
    batches = [frames[i:i + BATCH] for i in range(0, len(frames), BATCH)]
    rates = []
    for run in range(RUNS):
        m = LinkMatcher(["n1", "n2", "n3"])
        peak = 0
        gc.collect()
        c0 = time.process_time()
        for b in batches:
            m.add(b)
            peak = max(peak, len(m.pending))
        m.finish()
        snap = m.snapshot(final=True)
        cpu = time.process_time() - c0
        rates.append(len(frames) / cpu)
        lossy = next(p for p in snap.pairs if p.src == "n1" and p.dst == "n2")
        print(f"run {run + 1}: {len(frames) / cpu:,.0f} sightings/s ({cpu:.2f} s CPU); peak pending {peak:,}; "
              f"n1→n2 loss {lossy.loss:.2%}, p50 {lossy.delay_p50_ms} ms")
    tracemalloc.start()
    m = LinkMatcher(["n1", "n2", "n3"])
    base = tracemalloc.get_traced_memory()[0]
    peak_mem = peak = 0
    for b in batches:
        m.add(b)
        if len(m.pending) > peak:
            peak, peak_mem = len(m.pending), tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"memory: {peak_mem / 1e6:.1f} MB traced at the peak of {peak:,} pending sightings "
          f"(~{peak_mem / max(peak, 1):.0f} bytes each; the bound is {m.max_pending:,}, window {m.window:g} s)")
    print(f"median of {RUNS}: {statistics.median(rates):,.0f} sightings/s through the matcher "
          f"(= {statistics.median(rates) / 2:,.0f} frames/s, each seen at both ends), one core, CPU time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
