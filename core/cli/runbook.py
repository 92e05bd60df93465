"""`overlay-tui runbook plan|apply`: the tutorial's steps, planned, applied and verified."""
from __future__ import annotations

import argparse
import json
import sys

from core.cli.run import run_async
from core.errors import UsageError
from core.model import StepState

MARK = {True: "ok  ", False: "FAIL", None: "n/a "}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runbook", help="plan, apply and verify the etcd cluster and the overlay")
    rsub = p.add_subparsers(dest="runbook_command", metavar="ACTION", required=True)
    plan = rsub.add_parser("plan", help="what would be done on each node, with the exact commands")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=lambda a: run_async(_plan(a)))
    apply = rsub.add_parser("apply", help="do every step that does not verify yet, then verify all")
    apply.add_argument("--json", action="store_true", help="print the result as one JSON object")
    apply.add_argument("--force", action="store_true",
                       help="wipe an etcd data dir left by another cluster, replace an etcd running with other flags, "
                       "migrate a plaintext etcd to TLS (asks first; --yes to skip the question)")
    apply.add_argument("--yes", action="store_true", help="answer yes to the --force question")
    apply.set_defaults(func=lambda a: run_async(_apply(a)))


def _steps_json(steps: list[StepState], done: dict[str, list[dict[str, str]]] | None = None) -> dict:
    """The apply's result; ``done``: per step id, what its apply did on each node (absent: nothing applied)."""
    available = [s for s in steps if s.ok is not None]
    return {"ok": bool(available) and all(s.ok for s in available),
            "steps": [{"id": s.id, "title": s.title, "ok": s.ok, "detail": s.detail, "commands": s.commands,
                       **({"done": (done or {})[s.id]} if s.id in (done or {}) else {})}
                      for s in steps]}


async def _plan(args: argparse.Namespace) -> int:
    from core.live import LiveService

    svc = LiveService.open(args.inventory)
    try:
        steps = await svc.runbook_plan()
    finally:
        await svc.close()
    if args.json:
        print(json.dumps({"steps": [{"id": s.id, "title": s.title, "commands": s.commands} for s in steps]}, indent=2))
        return 0
    for i, s in enumerate(steps, 1):
        print(f"{i}. {s.title}")
        for c in s.commands:
            print(f"     {c}")
    return 0


FORCE_TEXT = ("--force replaces what the etcd step finds in its way: an etcd running with other flags is stopped, a "
              "data dir of another cluster is wiped, and a plaintext cluster of an earlier apply is migrated to TLS "
              "(every member stops; the first restarts alone with --force-new-cluster, keeping the data and Docker's "
              "keys; the others rejoin it from empty data dirs; then every dockerd restarts onto the TLS store).")


def _confirm_force(plan: list[StepState]) -> None:
    if not sys.stdin.isatty():
        raise UsageError("--force wipes etcd data dirs left by another cluster and migrates a plaintext etcd to TLS; "
                         "add --yes to confirm without a terminal")
    etcd = next((s for s in plan if s.id == "etcd"), None)
    print(FORCE_TEXT + "\nThe etcd step will run:")
    for line in etcd.commands if etcd else []:
        print(f"     {line}")
    answer = input("Continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was wiped")


async def _apply(args: argparse.Namespace) -> int:
    from core.live import LiveService

    if args.force and not args.yes and not sys.stdin.isatty():
        _confirm_force([])
    svc = LiveService.open(args.inventory)
    live = sys.stdout.isatty() and not args.json
    reached: set[str] = set()
    done: dict[str, list[dict[str, str]]] = {}      # step id -> what its apply did, node by node
    try:
        plan = await svc.runbook_plan()          # filled in place by the apply
        if args.force and not args.yes:
            _confirm_force(plan)                 # shows the etcd step's commands (and warning) first
        index = {s.id: i for i, s in enumerate(plan, 1)}
        async for ev in svc.runbook_apply(plan, force_etcd=args.force):
            reached.add(ev.step.id)
            if ev.node:
                done.setdefault(ev.step.id, []).append({"node": ev.node, "message": ev.message})
            if not args.json:
                _progress(ev.step, ev.message, index[ev.step.id], live, ev.node)
    finally:
        await svc.close()
    for s in plan:
        if s.id not in reached:
            s.detail = "not run: an earlier step failed"
    result = _steps_json(plan, done)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("runbook: all available steps verified" if result["ok"] else "runbook: FAILED")
    return 0 if result["ok"] else 1


def _progress(step: StepState, message: str, index: int, live: bool, node: str | None = None) -> None:
    from core.runbook.steps import STEPS  # not at import: `overlay-tui --help` must not load asyncssh
    if step.running:
        if live:
            where = f"  {node}" if node else f" {step.title}"
            print(f"[{index}/{len(STEPS)}]{where}: {message}", flush=True)
        return
    print(f"[{index}/{len(STEPS)}] {MARK[step.ok]} {step.title}" + (f"\n        {step.detail}" if step.detail else ""), flush=True)
