"""`overlay-tui [--inventory FILE] record --out FILE`: write the cluster's state as JSON for replay.

What it writes is what :class:`core.recorded.service.RecordedService` reads: the console's deterministic
tests and `make screenshots` run on it, and `overlay-tui --replay-state FILE` shows it. Each part is
gathered on its own; a part that fails is recorded as an error (replayed as that error) and the
others are still written.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.cli.run import run_async
from core.errors import OverlayError, UsageError
from core.files import write_private

DEFAULT_COMMANDS = ("docker network ls", "ip -d link show type vxlan")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record nodes, etcd, keys, networks, runbook, doctor (and frames) to a JSON state file")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON file to write (e.g. tests/fixtures/lab_state.json)")
    p.add_argument("--replace", action="store_true", help="replace FILE (and its .pcap) if they exist")
    p.add_argument("--apply", action="store_true", help="apply the runbook first and record its events")
    p.add_argument("--ping", action="store_true", help="measure and record the probes' ping matrix")
    p.add_argument("--capture", type=float, default=0.0, metavar="SECONDS",
                   help="capture VXLAN frames on every node this long (while pinging) and save them next to FILE")
    p.add_argument("--log-lines", type=int, default=40, metavar="N", help="last N lines of each etcd/dockerd log")
    p.add_argument("--command", action="append", metavar="CMD", dest="commands",
                   help=f"command whose output to record on each node (default: {', '.join(DEFAULT_COMMANDS)})")
    p.add_argument("--rewrite", action="append", default=[], metavar="OLD=NEW",
                   help="replace text in the written state, e.g. 198.18.5.=198.18.0. so a fixture does not depend "
                        "on which /24 the lab was given")
    p.set_defaults(func=lambda args: run_async(_record(args)))


async def _part(state: dict[str, Any], part: str, coro) -> Any:
    """Await one part; a failure goes to ``state["errors"]`` and the others go on."""
    try:
        return await coro
    except OverlayError as e:
        state.setdefault("errors", {})[part] = str(e)
        print(f"overlay-tui: record: {part}: {e}", file=sys.stderr)
        return None


async def _logs(svc, lines: int) -> dict[str, list[str]]:
    from core.nodes.service import LOG_SOURCES

    out: dict[str, list[str]] = {}
    for node in svc.inventory.nodes:
        for source, path in LOG_SOURCES.items():
            try:
                res = await svc.pool.run(node, f"tail -n {lines} {shlex.quote(path)} 2>/dev/null", check=False)
                out[f"{node.name}/{source}"] = res.stdout.splitlines()
            except OverlayError as e:
                out[f"{node.name}/{source}"] = [f"(could not read {path}: {e})"]
    return out


async def _commands(svc, commands: list[str]) -> dict[str, Any]:
    out = {}
    for node in svc.inventory.nodes:
        for cmd in commands:
            try:
                out[f"{node.name}/{cmd}"] = await svc.run_command(node.name, cmd)
            except OverlayError as e:
                print(f"overlay-tui: record: {node.name}: `{cmd}`: {e}", file=sys.stderr)
    return out


async def _capture(svc, seconds: float, pcap: Path, state: dict[str, Any], replace: bool) -> None:
    frames: list = []

    async def take() -> None:
        end = time.monotonic() + seconds
        stream = svc.capture([n.name for n in svc.inventory.nodes])
        try:
            async for batch in stream:
                frames.extend(batch.frames)
                if time.monotonic() >= end:
                    break
        finally:
            await stream.aclose()

    task = asyncio.create_task(take())
    await asyncio.sleep(min(1.0, seconds / 3))
    await _part(state, "ping_during_capture", svc.ping_matrix())
    try:
        await asyncio.wait_for(task, timeout=seconds + 15)
    except TimeoutError:
        task.cancel()
    written = await svc.save_pcap(frames, str(pcap), replace=replace)
    state["capture"] = {"pcap": pcap.name, "frames": written, "seconds": seconds}


async def _record(args: argparse.Namespace) -> int:
    from core.live import LiveService
    from core.recorded.service import state_to_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in [out] + ([out.with_suffix(".pcap")] if args.capture > 0 else []):
        if os.path.lexists(path) and not args.replace:   # say so before minutes of recording, not after
            raise UsageError(f"--out {path}: already exists; give --replace to replace it, or another name")
    svc = LiveService.open(args.inventory)
    inv = svc.inventory
    state: dict[str, Any] = {"recorded_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "recorded_from": f"overlay-tui record on {inv.path}",
                             "inventory": {"path": inv.path, "nodes": list(inv.nodes), "cluster": inv.cluster},
                             "errors": {}}
    try:
        if args.apply:
            events = []
            async for ev in svc.runbook_apply():
                events.append(copy.deepcopy(ev))  # apply updates its step objects in place
                print(f"  {ev.step.id}{' [' + ev.node + ']' if ev.node else ''}: {ev.message}", file=sys.stderr)
            state["runbook_events"] = events
        state["nodes"] = await _part(state, "nodes", svc.nodes()) or []
        state["etcd"] = await _part(state, "etcd", svc.etcd_cluster()) or {"members": [], "healthy": False, "summary": []}
        state["keys"] = {"v3": await _part(state, "keys_v3", svc.etcd_keys("v3")) or [],
                         "v2": await _part(state, "keys_v2", svc.etcd_keys("v2")) or []}
        state["networks"] = await _part(state, "networks", svc.networks()) or []
        if args.ping:
            state["ping_matrix"] = await _part(state, "ping_matrix", svc.ping_matrix()) or []
        if args.capture > 0:
            await _part(state, "capture", _capture(svc, args.capture, out.with_suffix(".pcap"), state, args.replace))
        plan = await _part(state, "runbook", svc.runbook_plan()) or []
        state["runbook"] = {"plan": plan, "events": state.pop("runbook_events", [])}
        names = await _part(state, "names", svc.names())
        if names is not None:
            state["names"] = names
        state["logs"] = await _logs(svc, args.log_lines)
        state["commands"] = await _commands(svc, args.commands or list(DEFAULT_COMMANDS))
        doctor = await _part(state, "doctor", svc.doctor())
        if doctor is not None:
            state["doctor"] = doctor
    finally:
        await svc.close()
    text = state_to_json(state)
    for rule in args.rewrite:
        old, sep, new = rule.partition("=")
        if not sep or not old:
            raise UsageError(f"--rewrite {rule!r}: expected OLD=NEW")
        text = text.replace(old, new)
    write_private(out, text.encode(), replace=args.replace)
    print(f"recorded {len(state['nodes'])} nodes, {len(state['etcd'].members) if hasattr(state['etcd'], 'members') else 0} "
          f"etcd members, {len(state['networks'])} networks to {out}"
          + (f" ({len(state['errors'])} parts failed: {', '.join(state['errors'])})" if state["errors"] else ""))
    return 1 if state["errors"] else 0
