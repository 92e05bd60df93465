"""Fleet scale on the lab: `lab up`, `runbook apply`, `status` and console first paint for N nodes.

For each size (default 2, 4, 8, 16): a fresh lab is built (`lab up`, timed in-process until every node
answers SSH and `docker info`), then the whole `overlay-tui runbook apply --json` command is timed (wall
clock, a subprocess: Python start-up included), then `overlay-tui status --json` (wall clock), then the
console's first paint (OverlayApp on a LiveService of the lab, until every data pane filled once; headless
120x36). The gossip is sound when the apply's probe step verified: every probe pings every other probe,
by name and by address, 0% loss (N*(N-1) pairs); the line says how many pairs. Target: 16 nodes apply < 60 s.
``OVERLAY_TUI_STORE_WAVE=4`` restarts dockerd in waves of 4 after the first host (default: host by host).
Needs root. Run: .venv/bin/python bench/fleet.py [--sizes 2,4,8,16] [--runs N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.lab.manager import lab_down, lab_up  # noqa: E402

TARGET_APPLY_16 = 60.0
CLI = [sys.executable, "-c", "import sys; from tui.launcher import main; sys.exit(main())"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def timed_cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, stdin=subprocess.DEVNULL,
                         timeout=900)
    return time.monotonic() - t0, out


async def first_paint(inventory: str) -> float:
    from core.live import LiveService
    from tui.app import OverlayApp
    from tui.messages import FirstPaint

    seen: list[FirstPaint] = []
    app = OverlayApp(LiveService.open(inventory), watch=False)
    hook = lambda m: seen.append(m) if isinstance(m, FirstPaint) else None  # noqa: E731
    async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
        for _ in range(6000):
            if seen:
                break
            await asyncio.sleep(0.01)
        await pilot.pause()
    return seen[0].seconds if seen else float("nan")


def one_size(name: str, nodes: int) -> dict:
    t0 = time.monotonic()
    info = asyncio.run(lab_up(name, nodes))
    up = time.monotonic() - t0
    try:
        apply_s, out = timed_cli("--inventory", info.inventory_path, "runbook", "apply", "--json")
        result = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {"ok": False, "steps": []}
        probes = next((s["detail"] for s in result["steps"] if s["id"] == "probes"), out.stderr.strip()[-200:])
        store = next((s["detail"] for s in result["steps"] if s["id"] == "docker-store"), "")
        status_s, st = timed_cli("--inventory", info.inventory_path, "status", "--json")
        paint = asyncio.run(first_paint(info.inventory_path))
        return {"nodes": nodes, "up": up, "apply": apply_s, "ok": bool(result.get("ok")), "probes": probes,
                "store": store, "status": status_s, "status_exit": st.returncode, "paint": paint}
    finally:
        lab_down(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,4,8,16", help="comma-separated node counts (default 2,4,8,16)")
    ap.add_argument("--runs", type=int, default=1, help="runs per size (median printed)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    name = f"fleet{os.getpid() % 100000}"
    rows = []
    for n in sizes:
        runs = [one_size(name, n) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("up", "apply", "status", "paint")}
        rows.append((n, med, runs))
        print(f"{n} nodes done: apply {med['apply']:.1f} s", file=sys.stderr, flush=True)
    print(f"fleet on this machine ({os.cpu_count()} cores, shared), median of {args.runs} run(s) per size; "
          f"apply and status are whole-command wall clock; dockerd restart waves of "
          f"{os.environ.get('OVERLAY_TUI_STORE_WAVE') or 1}")
    print(f"{'nodes':>5}  {'lab up':>7}  {'apply':>7}  {'status':>7}  {'paint':>6}  gossip sound? (probe step, every run)")
    for n, med, runs in rows:
        sound = "; ".join(("yes: " if r["ok"] else "NO: ") + r["probes"] for r in runs)
        print(f"{n:>5}  {med['up']:>6.1f}s  {med['apply']:>6.1f}s  {med['status']:>6.1f}s  {med['paint']:>5.2f}s  {sound}")
    big = [med["apply"] for n, med, _ in rows if n == 16]
    if big:
        print(f"target: 16 nodes apply < {TARGET_APPLY_16:g} s -> {'met' if big[0] < TARGET_APPLY_16 else 'MISSED'} "
              f"({big[0]:.1f} s)")
    return 0 if all(r["ok"] for _, _, runs in rows for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
