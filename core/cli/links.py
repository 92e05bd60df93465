"""`overlay-tui links`: per ordered node pair (and VNI) loss, reordering, duplicates and one-way delay,
from the same VXLAN frames captured leaving one node and arriving at the other (see core.links)."""
from __future__ import annotations

import argparse
import json
import sys

from core.cli.run import run_async
from core.errors import UsageError
from core.links.format import snapshot_json, snapshot_lines, summary_line
from core.model import LinksSnapshot

DEFAULT_SECONDS = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("links", help="per node pair loss and one-way delay of the underlay, from both ends",
                       description="Capture on the nodes (every node by default) for --seconds, match each VXLAN "
                                   "frame seen leaving its source with its arrival at the destination, and print "
                                   "per ordered pair: sent, received, lost, reordered, duplicated, one-way delay "
                                   "(clock offset removed, from both directions).")
    p.add_argument("--node", "-n", metavar="NAME", action="append", help="capture on this node (repeatable; default all)")
    p.add_argument("--seconds", "-s", metavar="S", type=float, default=DEFAULT_SECONDS,
                   help=f"how long to measure (default {DEFAULT_SECONDS:g})")
    p.add_argument("--json", action="store_true", help='print {"pairs": [...]} as JSON')
    p.add_argument("--per-vni", action="store_true", help="one row per pair and VNI")
    p.add_argument("--active", action="store_true",
                   help="also ping between the probe containers of pairs that carry no traffic")
    p.set_defaults(func=lambda args: run_async(_links(args)))


def _service(args: argparse.Namespace):
    if args.replay_state:
        from core.recorded.service import RecordedService
        return RecordedService.load(args.replay_state, read_only=True)
    from core.live import LiveService
    return LiveService.open(args.inventory, read_only=not args.active)


async def _links(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise UsageError("--seconds must be more than 0")
    svc = _service(args)
    final: LinksSnapshot | None = None
    try:
        async for snap in svc.links(args.node or [], args.seconds, active=args.active):
            for note in snap.notices:
                print(f"# {note}", file=sys.stderr, flush=True)
            final = snap
    finally:
        await svc.close()
    if final is None:
        return 1
    if args.json:
        print(json.dumps(snapshot_json(final, args.per_vni), indent=1))
    else:
        print("\n".join(snapshot_lines(final, args.per_vni)))
    print(f"# {summary_line(final)}", file=sys.stderr)
    return 0
