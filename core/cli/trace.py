"""`overlay-tui trace SRC_CONTAINER DST`: marked pings from a container, shown hop by hop with times,
and where each echo was last seen (see core.trace.service for the path and what watches each step)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from core.cli.run import run_async
from core.model import TraceResult


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


def trace_lines(res: TraceResult) -> list[str]:
    """Per echo: each step with its time after the first sighting (ms), then the verdicts."""
    out = [f"trace {res.src} ({res.src_ip} on {res.src_node}) → {res.dst} ({res.dst_ip} on {res.dst_node or '?'})"]
    seqs = sorted({h.seq for h in res.hops})
    for seq in seqs:
        hops = [h for h in res.hops if h.seq == seq]
        t0 = next((h.ts for h in hops if h.ts is not None), None)
        out.append(f"echo {seq}:")
        for h in hops:
            when = "not seen" if h.ts is None else f"+{(h.ts - (t0 or h.ts)) * 1000:8.3f} ms"
            out.append(f"  {h.step}. {h.point:<44} {when}")
    out += res.verdicts
    out += [f"not watched: {u}" for u in res.unobservable]
    if not res.hops and res.ping_output:
        out.append(res.ping_output.strip())
    return out
