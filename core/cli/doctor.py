"""`overlay-tui doctor [--json] [--node N ...] [--check ID ...]`: every known way the overlay breaks, with its fix.

Read-only as far as the nodes' configuration goes (the port test adds a counting nftables table on the
receiving node for about a second and removes it; see :mod:`core.doctor.probes`). Exit 0 when no check
fails (warnings allowed), 1 when one fails, 2 for bad input (an unknown node or check).
"""
from __future__ import annotations

import argparse
import json
import sys

from core.cli.run import run_async
from core.model import DoctorReport

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check every known way the overlay breaks (ports, MTU, hostnames, etcd, ...)")
    p.add_argument("--json", action="store_true", help='print {"ok": bool, "checks": [...]}')
    p.add_argument("--node", action="append", metavar="N", dest="nodes", help="only this node (repeatable)")
    p.add_argument("--check", action="append", metavar="ID", dest="checks",
                   help="only this check id, e.g. ports.udp4789 (repeatable)")
    p.set_defaults(func=lambda args: run_async(_doctor(args)))


def clean(text: str) -> str:
    """Text from the nodes without control characters (terminal escapes)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def report_json(report: DoctorReport) -> dict:
    return {"ok": report.ok, "checks": [{"id": c.id, "status": c.status, "nodes": c.nodes, "summary": c.summary,
                                         "evidence": c.evidence, "fix": c.fix} for c in report.checks]}


def report_lines(report: DoctorReport) -> list[str]:
    """One line per check with a mark; evidence and fix indented under the ones that are not ok."""
    lines = []
    for c in report.checks:
        where = f" [{', '.join(c.nodes)}]" if c.nodes else ""
        lines.append(f"{MARKS.get(c.status, c.status)} {c.id:<20} {clean(c.summary)}{where}")
        if c.status != "ok":
            lines += [f"       seen: {clean(e)}" for e in c.evidence]
            if c.fix:
                lines.append(f"       fix:  {clean(c.fix)}")
    fails = sum(c.status == "fail" for c in report.checks)
    warns = sum(c.status == "warn" for c in report.checks)
    lines.append(f"doctor: {len(report.checks)} checks, {fails} failed, {warns} warnings ({report.seconds:.1f} s)")
    return lines


async def _doctor(args: argparse.Namespace) -> int:
    from core.live import LiveService

    svc = LiveService.open(args.inventory, read_only=True)
    try:
        report = await svc.doctor(args.nodes, checks=args.checks)
    finally:
        await svc.close()
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print("\n".join(report_lines(report)))
    sys.stdout.flush()
    return 0 if report.ok else 1
