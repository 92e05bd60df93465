"""Lab up and down times for 2 and 5 nodes (median of 3 runs each). Target: 2-node up under 15 s.

`lab up` is timed until every node answers SSH (host key checked) and `docker info`; `lab down`
until every process, namespace, link, mount and the state dir is gone. Needs root.
Run: .venv/bin/python bench/lab.py [--runs N]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core.lab.manager import lab_down, lab_up

TARGET_UP_2 = 15.0


def one_run(name: str, nodes: int) -> tuple[float, float]:
    t0 = time.monotonic()
    info = asyncio.run(lab_up(name, nodes))
    up = time.monotonic() - t0
    assert len(info.nodes) == nodes and info.seconds > 0, "the lab was already up: not a fresh build"
    t0 = time.monotonic()
    lab_down(name)
    return up, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    name = f"bench{os.getpid() % 100000}"
    rows = []
    try:
        for nodes in (2, 5):
            ups, downs = [], []
            for _ in range(args.runs):
                up, down = one_run(name, nodes)
                ups.append(up)
                downs.append(down)
            rows.append((nodes, statistics.median(ups), statistics.median(downs), ups, downs))
    finally:
        lab_down(name)
    print(f"lab up/down on this machine ({os.cpu_count()} cores), median of {args.runs} runs")
    print(f"{'nodes':>5}  {'up (s)':>7}  {'down (s)':>8}  runs up / down")
    for nodes, up, down, ups, downs in rows:
        print(f"{nodes:>5}  {up:>7.2f}  {down:>8.2f}  {' '.join(f'{u:.2f}' for u in ups)} / "
              f"{' '.join(f'{d:.2f}' for d in downs)}")
    up2 = rows[0][1]
    print(f"target: 2-node lab up < {TARGET_UP_2:g} s -> {'met' if up2 < TARGET_UP_2 else 'MISSED'} ({up2:.2f} s)")
    return 0 if up2 < TARGET_UP_2 else 1


if __name__ == "__main__":
    sys.exit(main())
