"""How fast the console's node rows arrive, healthy and with one node's link down (issue 12).

On a fresh lab of --nodes N (etcd and Docker's cluster store applied first), prints medians over --runs
rounds, each an in-process wall clock of one service call on a warm LiveService:
- ``node_statuses()``: when each healthy row arrives, when the last arrives, and ``nodes()`` (all at once);
- the same with the last node's link down (``ip link set eth0 down`` in its namespace): when the healthy
  rows arrive, and when the silent node arrives as down (its own timeout);
- ``etcd_cluster()`` and ``network_listing()`` (the etcd and networks panes' calls) with that link down, the
  first after the link went down apart from the ones after it.
Needs root. Run: .venv/bin/python bench/node_rows.py [--nodes 3] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core.lab.manager import lab_down, lab_up
from core.live import LiveService


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.0f} ms" if xs else "-"


async def rows(svc: LiveService, silent: str | None) -> tuple[list[float], float | None]:
    """(arrival times of the answering rows, arrival of the silent node's row) of one node_statuses()."""
    t0, healthy, down = time.monotonic(), [], None
    async for s in svc.node_statuses():
        t = time.monotonic() - t0
        if s.name == silent:
            down = t
        else:
            healthy.append(t)
    return healthy, down


async def timed(call) -> float:
    t0 = time.monotonic()
    try:
        await call()
    except Exception:  # noqa: BLE001 - a failed read still costs its time: that is the figure
        pass
    return time.monotonic() - t0


async def bench(nodes: int, runs: int) -> None:
    name = f"bnr{os.getpid() % 10000}"
    info = await lab_up(name, nodes)
    netns = info.nodes[-1].netns
    svc = LiveService(info.inventory())
    try:
        await svc.etcd_apply()
        await svc.docker_store_apply()
        await svc.nodes()                                    # warm: connections and Docker clients open
        first, last, whole = [], [], []
        for _ in range(runs):
            healthy, _ = await rows(svc, None)
            first.append(healthy[0])
            last.append(healthy[-1])
            whole.append(await timed(svc.nodes))
        print(f"{nodes} nodes, healthy: first row {med(first)}, last row {med(last)}; nodes() {med(whole)}")
        silent = info.nodes[-1].name
        subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "down"], check=True)
        try:
            others, down, etcd, nets = [], [], [], []
            for _ in range(runs):
                healthy, gone = await rows(svc, silent)
                others.append(max(healthy))
                down.append(gone or 0.0)
                etcd.append(await timed(svc.etcd_cluster))
                nets.append(await timed(svc.network_listing))
            print(f"{silent}'s link down: the other rows all in {med(others)}; {silent} as down in {med(down)}; "
                  f"etcd_cluster() {med(etcd)}; network_listing() {med(nets)} (median of {runs})")
            # the first of each after the link went down pays the silent node's whole timeout; the later ones
            # (what a pane's refreshes cost while the node stays silent) wait on it briefly
            print(f"  first after the link went down / median of the {runs - 1} after: etcd_cluster() "
                  f"{med(etcd[:1])} / {med(etcd[1:])}; network_listing() {med(nets[:1])} / {med(nets[1:])}")
        finally:
            subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "up"], check=True)
    finally:
        await svc.close()
        lab_down(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    asyncio.run(bench(a.nodes, a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
