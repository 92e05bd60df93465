"""Fleet scale on the lab: `lab up`, `runbook apply`, `status` and console first paint for N nodes.

For each size (default 2, 4, 8, 16): a fresh lab is built (`lab up`, timed in-process until every node
answers SSH and Docker's API), then the whole `overlay-tui runbook apply --json` command is timed (wall
clock, a subprocess: Python start-up included), then `overlay-tui status --json` (wall clock), then the
console's first paint (OverlayApp on a LiveService of the lab, until every data pane filled once; headless
120x36). Target: 16 nodes apply < 60 s.

Soundness of the restart waves (the docker-store step restarts the seed alone, then dockerd ``k`` at a
time: ``OVERLAY_TUI_STORE_WAVE`` or the inventory's ``[cluster] docker_restart_wave``, default 4). After
each apply two independent checks: (1) the apply's probe step verified: every probe pings every other, by
name and by address, 0% loss (N*(N-1) pairs), which fails when the overlay's gossip is split; (2) every
node's dockerd gossip (serf's member events in its log since it started) knows every other node. A
partition is an apply after which either check fails. The apply heals what its own gossip check catches
(a node out is brought in by announcing a node of the whole gossip again in the store, else restarted
alone), so the bench also counts both: the nodes the apply's output says joined after an announce, and
dockerd starts beyond one per node, read from the nodes' logs. ``--repeat R`` applies R more times on the same lab, each time after
taking cluster-advertise out of every daemon.json, so every dockerd restarts in waves again.
Needs root. Run: .venv/bin/python bench/fleet.py [--sizes 2,4,8,16] [--runs N] [--repeat R]
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.dockerd import store  # noqa: E402
from core.lab.manager import lab_down, lab_up  # noqa: E402
from core.model import ClusterSpec  # noqa: E402

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


def dockerd_starts(lab_dir: str) -> dict[str, int]:
    """How many times each node's dockerd started so far (its log is appended, never truncated)."""
    out = {}
    for log in sorted(Path(lab_dir, "nodes").glob("docker-node*/var-log/dockerd.log")):
        out[log.parent.parent.name] = log.read_text(errors="replace").count('msg="Starting up"')
    return out


async def gossip_outsiders(inventory_path: str) -> dict[str, str]:
    from core.live import LiveService

    svc = LiveService.open(inventory_path)
    try:
        names = [n.name for n in svc.inventory.nodes]
        ips = await svc.addresses.all(svc.inventory.nodes)
        return store.gossip_outsiders(await store.gossip_views(svc.pool, names), ips)
    finally:
        await svc.close()


def timed_apply(info, restarting: int) -> dict:
    """One whole `runbook apply --json`; whether it came out sound, and how many rejoins it needed."""
    before = dockerd_starts(info.dir)
    apply_s, out = timed_cli("--inventory", info.inventory_path, "runbook", "apply", "--json")
    result: dict = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {"ok": False, "steps": []}
    probes = next((s["detail"] for s in result["steps"] if s["id"] == "probes"), out.stderr.strip()[-200:])
    after = dockerd_starts(info.dir)
    starts = sum(after[n] - before.get(n, 0) for n in after)
    gossip = asyncio.run(gossip_outsiders(info.inventory_path))
    return {"apply": apply_s, "ok": bool(result.get("ok")), "probes": probes, "gossip_out": gossip,
            "sound": bool(result.get("ok")) and not gossip, "rejoins": max(0, starts - restarting),
            "announced": out.stdout.count("joined the gossip once the store announced")}


def unconfigure(info) -> None:
    """Take cluster-advertise out of every node's daemon.json, so the next apply restarts every dockerd."""
    for f in Path(info.dir, "nodes").glob("docker-node*/etc-docker/daemon.json"):
        cfg = json.loads(f.read_text())
        cfg.pop("cluster-advertise", None)
        f.write_text(json.dumps(cfg, indent=2) + "\n")


def one_size(name: str, nodes: int, repeat: int) -> dict:
    t0 = time.monotonic()
    info = asyncio.run(lab_up(name, nodes))
    up = time.monotonic() - t0
    try:
        first = timed_apply(info, nodes)
        status_s, st = timed_cli("--inventory", info.inventory_path, "status", "--json")
        paint = asyncio.run(first_paint(info.inventory_path))
        again = []
        for _ in range(repeat if first["ok"] else 0):
            unconfigure(info)
            again.append(timed_apply(info, nodes))
        return {"nodes": nodes, "up": up, "apply": first["apply"], "ok": first["ok"], "probes": first["probes"],
                "status": status_s, "status_exit": st.returncode, "paint": paint, "applies": [first, *again]}
    finally:
        lab_down(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,4,8,16", help="comma-separated node counts (default 2,4,8,16)")
    ap.add_argument("--runs", type=int, default=1, help="runs per size, each on a fresh lab (median printed)")
    ap.add_argument("--repeat", type=int, default=0,
                    help="applies per lab after the first, each restarting every dockerd (soundness)")
    ap.add_argument("--name", default=f"fleet{os.getpid() % 100000}", help="lab name (distinct per bench)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    wave = store.restart_wave(SimpleNamespace(cluster=ClusterSpec(), path="(default)"))
    rows = []
    for n in sizes:
        runs = [one_size(args.name, n, args.repeat) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("up", "apply", "status", "paint")}
        rows.append((n, med, runs))
        print(f"{n} nodes done: apply {med['apply']:.1f} s", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"fleet on this machine ({os.cpu_count()} cores, shared: load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"at the end), median of {args.runs} fresh lab(s) per size; apply and status are whole-command wall "
          f"clock; dockerd restarted seed first, then in waves of {wave}")
    print(f"{'nodes':>5}  {'lab up':>7}  {'apply':>7}  {'status':>7}  {'paint':>6}  first apply: probe step")
    for n, med, runs in rows:
        probes = "; ".join(("ok: " if r["ok"] else "FAILED: ") + r["probes"] for r in runs)
        print(f"{n:>5}  {med['up']:>6.1f}s  {med['apply']:>6.1f}s  {med['status']:>6.1f}s  {med['paint']:>5.2f}s  {probes}")
    print("soundness (per size: every apply, the first on a fresh lab and each --repeat after every dockerd was "
          "unconfigured; sound = the probe step verified every pair AND every dockerd's gossip knows every node):")
    for n, _, runs in rows:
        applies = [a for r in runs for a in r["applies"]]
        sound = sum(a["sound"] for a in applies)
        rejoins = sum(a["rejoins"] for a in applies)
        announced = sum(a["announced"] for a in applies)
        times = [a["apply"] for a in applies]
        bad = "; ".join(f"{a['probes']} / gossip out: {a['gossip_out']}" for a in applies if not a["sound"])
        print(f"{n:>5} nodes: {len(applies)} applies, {sound} sound, {len(applies) - sound} partitioned; "
              f"{announced} node(s) caught out of the gossip brought in by announcing a node again, {rejoins} "
              "restarted alone; apply "
              f"{min(times):.1f}-{max(times):.1f} s" + (f"; NOT sound: {bad}" if bad else ""))
    big = [med["apply"] for n, med, _ in rows if n == 16]
    if big:
        print(f"target: 16 nodes apply < {TARGET_APPLY_16:g} s -> {'met' if big[0] < TARGET_APPLY_16 else 'MISSED'} "
              f"({big[0]:.1f} s)")
    return 0 if all(a["sound"] for _, _, runs in rows for r in runs for a in r["applies"]) else 1


if __name__ == "__main__":
    sys.exit(main())
