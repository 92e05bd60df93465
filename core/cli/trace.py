"""`overlay-tui trace SRC_CONTAINER DST`: marked pings from a container, shown hop by hop with times,
and where each echo was last seen (see core.trace.service for the path and what watches each step)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from core.cli.run import run_async
from core.trace.format import trace_lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="follow marked pings from a container hop by hop; say where they die",
                       description="Ping DST (a container name on the same overlay network, or an address) from "
                                   "SRC_CONTAINER with marked packets while watching inside both containers and "
                                   "on both nodes' underlay; print each hop's time and the last hop each echo "
                                   "was seen at.")
    p.add_argument("src", metavar="SRC_CONTAINER")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--count", "-c", type=int, default=3, help="echoes to send (1-20, default 3)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=lambda args: run_async(_trace(args)))


async def _trace(args: argparse.Namespace) -> int:
    from core.live import LiveService

    svc = LiveService.open(args.inventory)
    try:
        res = await svc.trace(args.src, args.dst, args.count)
    finally:
        await svc.close()
    if args.json:
        print(json.dumps(asdict(res), indent=1))
    else:
        print("\n".join(trace_lines(res)))
    return 0 if all("back in" in v for v in res.verdicts) else 1
