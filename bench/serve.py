"""Benchmark `overlay-tui serve`: connect-to-first-full-paint and key-to-redraw latency over SSH.

Runs the server on a free loopback port with a throw-away access list and host key, and drives it with
the real OpenSSH client on a pty (tests/serve_helpers.py). On the recorded state
(tests/fixtures/lab_state.json, deterministic), and on the live lab when one is up (read-only).
The same console run locally on a pty, without SSH, gives the bridge's overhead; the server with
--no-warm-spare shows what the warm spare console saves (Python and Textual start-up).

- first full paint: from starting `ssh` until the screen shows every node, the etcd members and the
  networks, painted across the full width;
- key-to-redraw: press 1 and 3 in turn (focus nodes / networks) and time until the footer shows the
  newly focused pane's keys; median and p95;
- the bridge alone: a stand-in console that echoes keys, to tell SSH + pty cost from the console's own.

Usage: .venv/bin/python bench/serve.py [--rounds 5] [--keys 20] [--concurrent 4] [--no-live]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from serve_helpers import STANDIN, ServeProcess, SSHTerminal, children_of, make_key  # noqa: E402

RECORDED = ROOT / "tests" / "fixtures" / "lab_state.json"
COLS, ROWS = 120, 36
FOCUS = [("1", r"Run command"), ("3", r"Ping matrix")]  # key, what the footer shows after it


def full_paint(t: SSHTerminal, nodes: list[str], network: str | None, timeout: float = 60.0) -> None:
    for marker in [*map(re.escape, nodes), r"etcd members", *([re.escape(network)] if network else []),
                   rf"(?m)^╭[^\r\n]{{{COLS - 2}}}╮\r?$"]:
        t.expect(marker, timeout)


def time_first_paint(argv: list[str], nodes: list[str], network: str | None) -> tuple[float, SSHTerminal]:
    t0 = time.monotonic()
    t = SSHTerminal(argv, cols=COLS, rows=ROWS)
    full_paint(t, nodes, network)
    return time.monotonic() - t0, t


def key_latencies(t: SSHTerminal, presses: int) -> list[float]:
    t.send(FOCUS[1][0])  # start from a known focus
    t.expect(FOCUS[1][1])
    out = []
    for i in range(presses):
        key, marker = FOCUS[i % 2]
        t0 = time.monotonic()
        t.send(key)
        t.expect(marker, 10)
        out.append(time.monotonic() - t0)
    return out


def quit_console(t: SSHTerminal) -> None:
    t.send("q")
    status = t.wait_exit(20)
    t.close()
    if status != 0:
        raise SystemExit(f"the console exited with status {status}")


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 0.01 else f"{x * 1000:.0f} ms"


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_spare_idle(srv: ServeProcess, timeout: float = 30.0) -> None:
    """Until the server's warm spare exists and has stopped using CPU (its imports are done)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        kids = children_of(srv.proc.pid)
        ticks = cpu_ticks(kids[0]) if kids else None
        if ticks is not None and ticks == last:
            return
        last = ticks
        time.sleep(0.3)
    raise SystemExit("the warm spare console did not settle")


def bench_target(label: str, argv_of, nodes, network, rounds: int, presses: int, before=None) -> None:
    paints, keys = [], []
    for r in range(rounds):
        if before is not None:
            before()
        secs, t = time_first_paint(argv_of(), nodes, network)
        paints.append(secs)
        if r == 0:
            keys = key_latencies(t, presses)
        quit_console(t)
    print(f"{label:<34} first full paint median {ms(statistics.median(paints))} "
          f"(min {ms(min(paints))}, max {ms(max(paints))}, n={rounds}); "
          f"key-to-redraw median {ms(statistics.median(keys))}, p95 {ms(p95(keys))} (n={len(keys)})")


def bench_concurrent(srv: ServeProcess, key: Path, nodes, network, n: int) -> None:
    t0 = time.monotonic()
    terms = [SSHTerminal(srv.ssh_argv(key, "-tt"), cols=COLS, rows=ROWS) for _ in range(n)]
    done = []
    for t in terms:
        full_paint(t, nodes, network)
        done.append(time.monotonic() - t0)
    for t in terms:
        quit_console(t)
    print(f"{n} sessions opened at once (warm spare for one): all painted after {ms(max(done))} (first at {ms(min(done))})")


def bench_bridge(work: Path, access: Path, key: Path, presses: int) -> None:
    """The bridge alone: a stand-in console that echoes each key at once (no Textual)."""
    script = work / "standin.py"
    script.write_text(STANDIN)
    cmd = f"{sys.executable} {script}"
    with ServeProcess(work, access, ("--replay-state", str(script), "--console-command", cmd)) as srv:
        t0 = time.monotonic()
        t = SSHTerminal(srv.ssh_argv(key, "-tt"), cols=COLS, rows=ROWS)
        t.expect(r"READY")
        ready = time.monotonic() - t0
        lat = []
        for i in range(presses):
            ch = "abdeijklmnoprstuv"[i % 17]  # not c, f, g, h, q, x: the stand-in acts on those
            t0 = time.monotonic()
            t.send(ch)
            t.expect(rf"KEY b'{ch}'")
            lat.append(time.monotonic() - t0)
        quit_console(t)
    print(f"{'bridge only (echo stand-in), SSH':<34} connect to first output {ms(ready)}; "
          f"key-to-echo median {ms(statistics.median(lat))}, p95 {ms(p95(lat))} (n={presses})")


def live_inventory() -> str | None:
    from core.errors import OverlayError
    from core.live import resolve_inventory

    try:
        return resolve_inventory(None).path
    except OverlayError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="sessions opened one after another per target")
    ap.add_argument("--keys", type=int, default=20, help="key presses timed in the first session")
    ap.add_argument("--concurrent", type=int, default=4, help="sessions opened at once (0: skip)")
    ap.add_argument("--no-live", action="store_true", help="skip the live lab even if one is up")
    ap.add_argument("--inventory", metavar="FILE", help="live nodes to bench (default: the lab's, when it is up)")
    args = ap.parse_args()
    state = json.loads(RECORDED.read_text())
    nodes = [n["name"] for n in state["inventory"]["nodes"]]
    network = state["networks"][0]["name"] if state.get("networks") else None
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        key = make_key(work / "operator")
        access = work / "authorized_keys"
        access.write_text((work / "operator.pub").read_text())
        local = [sys.executable, "-m", "tui.launcher", "--replay-state", str(RECORDED)]
        print(f"terminal {COLS}x{ROWS}; recorded state {RECORDED.relative_to(ROOT)} ({len(nodes)} nodes); "
              f"load average {open('/proc/loadavg').read().split()[0]}")
        bench_bridge(work, access, key, args.keys)
        bench_target("recorded, local pty (no SSH)", lambda: local, nodes, network, args.rounds, args.keys)
        with ServeProcess(work, access, ("--replay-state", str(RECORDED), "--no-warm-spare")) as srv:
            bench_target("recorded, SSH, cold start", lambda: srv.ssh_argv(key, "-tt"), nodes, network,
                         args.rounds, args.keys)
        with ServeProcess(work, access, ("--replay-state", str(RECORDED))) as srv:
            bench_target("recorded, SSH, warm spare", lambda: srv.ssh_argv(key, "-tt"), nodes, network,
                         args.rounds, args.keys, before=lambda: wait_spare_idle(srv))
            if args.concurrent:
                wait_spare_idle(srv)
                bench_concurrent(srv, key, nodes, network, args.concurrent)
        inventory = None if args.no_live else (args.inventory or live_inventory())
        if inventory is None:
            print("live lab: none up (start one with `overlay-tui lab up`), skipped")
            return 0
        from core.inventory import load_inventory

        inv = load_inventory(inventory)
        live_nodes = [n.name for n in inv.nodes]
        with ServeProcess(work, access, ("--inventory", inventory, "--read-only")) as srv:
            bench_target(f"live ({len(live_nodes)} nodes), SSH, warm spare", lambda: srv.ssh_argv(key, "-tt"),
                         live_nodes, inv.cluster.network, min(args.rounds, 3), args.keys,
                         before=lambda: wait_spare_idle(srv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
