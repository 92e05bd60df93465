"""Soak: the console on a live 3-node lab while one node's dockerd and etcd are killed and restarted.

Brings up a fresh lab (``--name``, 3 nodes), applies the runbook, then runs the console (the real
:class:`tui.app.OverlayApp` with its timers and watch, headless through ``App.run_test``) on a
LiveService for ``--minutes`` (default 10). Every ``--interval`` seconds (default 60) a separate
process kills the victim node's dockerd and etcd (SIGTERM, as ``kill`` does), leaves them down for
``--down`` seconds, then restarts them as the runbook does (``etcd apply`` restarts the member from
its data dir; dockerd is started again with its daemon.json and awaited on the cluster store). The
injector is its own process so only the console is measured.

Prints open fds, threads (Python and OS), RSS, SSH forward listeners and cached etcd clients of the
console's process at the start (after the first full paint), after each cycle and at the end. Flat
is the goal. Needs root. Run: .venv/bin/python bench/soak.py [--minutes 10] [--keep-lab]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core.inventory import load_inventory
from core.lab.manager import lab_down, lab_up
from core.live import LiveService

VICTIM = "docker-node3"


def process_figures() -> dict[str, int]:
    """Open fds, OS threads, Python threads and RSS (KiB) of this process."""
    text = Path("/proc/self/status").read_text()
    status = dict(row.split(":", 1) for row in text.splitlines() if ":" in row)
    return {"fds": len(os.listdir("/proc/self/fd")), "os_threads": int(status["Threads"]),
            "py_threads": threading.active_count(), "rss_kib": int(status["VmRSS"].split()[0])}


def line(label: str, svc: LiveService, t0: float) -> str:
    f = process_figures()
    return (f"{label:<10} t={time.monotonic() - t0:6.0f}s fds={f['fds']:4d} threads={f['os_threads']:3d} "
            f"(python {f['py_threads']:3d}) rss={f['rss_kib'] / 1024:6.1f} MiB "
            f"forwards={svc.pool.forwards:2d} etcd_clients={svc.etcd_reader.open_clients}")


# --- the fault injector (a child process) -----------------------------------------------------------------

async def inject(inventory_path: str, victim: str, down: float) -> None:
    """Kill ``victim``'s dockerd and etcd, wait ``down`` s, restart both as the runbook does."""
    from core.dockerd.store import wait_for_store

    svc = LiveService(load_inventory(inventory_path))
    try:
        node = svc.pool.spec(victim)
        docker_pid = int((await svc.pool.run(node, "cat /var/run/docker.pid", check=True)).stdout)
        etcd_pid = int((await svc.pool.run(node, "pgrep -x etcd", check=True)).stdout.split()[0])
        await asyncio.gather(svc.pool.kill(node, docker_pid, wait=30), svc.pool.kill(node, etcd_pid, wait=30))
        await asyncio.sleep(down)
        t0 = time.monotonic()
        await svc.etcd_apply()                                    # restarts the member from its data dir
        pid = await svc.pool.start_detached(node, "dockerd", "/var/log/dockerd.log")
        await wait_for_store(svc.docker, svc.pool, victim, f"etcd://{node.address}:2379", False, pid)
        print(f"restarted etcd and dockerd on {victim} in {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        await svc.close()


async def run_injector(inventory_path: str, victim: str, down: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, os.path.abspath(__file__), "--inject", inventory_path, "--victim", victim,
        "--down", str(down), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace").strip()
    return text if proc.returncode == 0 else f"injector failed ({proc.returncode}): {text[-400:]}"


# --- the soak -----------------------------------------------------------------------------------------------

async def apply_runbook(inventory_path: str) -> None:
    svc = LiveService(load_inventory(inventory_path))
    try:
        async for _ in svc.runbook_apply():
            pass
        bad = [s for s in await svc.runbook_verify() if not s.ok]
        if bad:
            print("warning: runbook not fully verified: " + "; ".join(f"{s.id}: {s.detail}" for s in bad))
    finally:
        await svc.close()


async def soak(inventory_path: str, minutes: float, interval: float, down: float, victim: str,
               trace: bool = False) -> None:
    import tracemalloc

    from tui.app import OverlayApp

    svc = LiveService(load_inventory(inventory_path))
    app = OverlayApp(svc)                              # the console as it runs: timers, refreshes, watch
    t0 = time.monotonic()
    async with app.run_test(size=(120, 36)):
        while app.first_paint_seconds is None:
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)                        # the first refresh cycles and the watch settle
        print(line("start", svc, t0), flush=True)
        if trace:
            tracemalloc.start(8)
            first = tracemalloc.take_snapshot()
        end = t0 + minutes * 60
        cycle = 0
        while time.monotonic() < end:
            cycle += 1
            started = time.monotonic()
            said = await run_injector(inventory_path, victim, down)
            await asyncio.sleep(max(0.0, min(interval - (time.monotonic() - started), end - time.monotonic())))
            print(line(f"cycle {cycle}", svc, t0) + f"  [{said}]", flush=True)
        print(line("end", svc, t0), flush=True)
        if trace:
            growth = tracemalloc.take_snapshot().compare_to(first, "traceback")
            print("largest growth of Python allocations since the start (tracemalloc):")
            for stat in growth[:8]:
                print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
                      + " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback[:4]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long the console runs (default 10)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between kill/restart cycles (default 60)")
    p.add_argument("--down", type=float, default=10.0, help="seconds dockerd and etcd stay down (default 10)")
    p.add_argument("--victim", default=VICTIM, help=f"the node whose daemons are killed (default {VICTIM})")
    p.add_argument("--name", default="soak", help="lab name (default soak)")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--tracemalloc", action="store_true",
                   help="also print where Python allocations grew (slows the console; figures then differ)")
    p.add_argument("--inject", metavar="INVENTORY", help=argparse.SUPPRESS)   # the child process's mode
    args = p.parse_args(argv)
    if args.inject:
        asyncio.run(inject(args.inject, args.victim, args.down))
        return 0
    t0 = time.monotonic()
    info = asyncio.run(lab_up(args.name, 3))
    try:
        asyncio.run(apply_runbook(info.inventory_path))
        print(f"lab {args.name} up with the runbook applied in {time.monotonic() - t0:.0f} s; console for "
              f"{args.minutes:g} min, {args.victim}'s dockerd and etcd killed every {args.interval:g} s", flush=True)
        asyncio.run(soak(info.inventory_path, args.minutes, args.interval, args.down, args.victim, args.tracemalloc))
    finally:
        if not args.keep_lab:
            lab_down(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
