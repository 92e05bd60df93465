"""The doctor's wall clock on fresh labs: prints medians, no assertions.

For 2 and 3 nodes: a fresh lab, the runbook applied, then ``overlay-tui doctor --json`` as a whole CLI
process (interpreter start, SSH connects, every check) and ``LiveService.doctor()`` in process on a
warm service (connections open), each --runs times; then the same warm call with one node's underlay
MTU lowered to 1400 (the path MTU pings then wait out their 1 s timeouts). Needs root.
Run: .venv/bin/python bench/doctor.py [--runs N] [--nodes 2 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from core.lab.manager import lab_down, lab_up  # noqa: E402
from core.live import LiveService  # noqa: E402


async def _apply(svc: LiveService) -> None:
    async for _ in svc.runbook_apply():
        pass


async def bench(nodes: int, runs: int) -> None:
    name = f"bdoc{os.getpid() % 10000}n{nodes}"
    info = await lab_up(name, nodes)
    try:
        svc = LiveService(info.inventory())
        try:
            await _apply(svc)
            cli = []
            for _ in range(runs):
                t0 = time.monotonic()
                subprocess.run([sys.executable, "-m", "tui.launcher", "--inventory", info.inventory_path, "doctor",
                                "--json"], cwd=ROOT, capture_output=True, check=False)
                cli.append(time.monotonic() - t0)
            await svc.doctor()                      # warm: connections and forwards open
            warm = []
            for _ in range(runs):
                t0 = time.monotonic()
                report = await svc.doctor()
                warm.append(time.monotonic() - t0)
            last = info.inventory().nodes[-1].name
            await svc.pool.run(last, "ip link set dev eth0 mtu 1400", check=True)
            try:
                small = []
                for _ in range(runs):
                    t0 = time.monotonic()
                    await svc.doctor()
                    small.append(time.monotonic() - t0)
            finally:
                await svc.pool.run(last, "ip link set dev eth0 mtu 1500", check=True)
        finally:
            await svc.close()
    finally:
        lab_down(name)
    print(f"{nodes} nodes, {len(report.checks)} checks: `doctor --json` CLI process median "
          f"{statistics.median(cli):.2f} s; warm service call {statistics.median(warm):.2f} s; "
          f"warm with one node at MTU 1400 {statistics.median(small):.2f} s (median of {runs})", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--nodes", type=int, nargs="*", default=[2, 3])
    args = p.parse_args()
    for n in args.nodes:
        asyncio.run(bench(n, args.runs))


if __name__ == "__main__":
    main()
