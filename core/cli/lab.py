"""`overlay-tui lab up|down|status`: the local lab of real nodes (see :mod:`core.lab.manager`)."""
from __future__ import annotations

import argparse
import asyncio
import json

from core.cli.run import run_async


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="the local lab: real nodes in network namespaces on this machine")
    lab_sub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True, parser_class=type(p))
    up = lab_sub.add_parser("up", help="build the lab; on an up lab, heal what is broken and add nodes")
    up.add_argument("--nodes", "-n", type=int, metavar="N", help="number of nodes (default 2; above an up lab's count adds nodes)")
    up.add_argument("--name", default="lab", help="lab name (default: lab)")
    up.set_defaults(func=lambda args: run_async(_up(args)))
    down = lab_sub.add_parser("down", help="remove the lab: processes, namespaces, links, mounts, state")
    down.add_argument("--name", default="lab", help="lab name (default: lab)")
    down.set_defaults(func=lambda args: run_async(_down(args)))
    status = lab_sub.add_parser("status", help="the lab's nodes and whether they answer SSH")
    status.add_argument("--name", default="lab", help="lab name (default: lab)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=lambda args: run_async(_status(args)))


async def _up(args: argparse.Namespace) -> int:
    from core.lab.manager import lab_up

    info = await lab_up(args.name, args.nodes)
    if info.healed:
        how = f"was up; healed in {info.seconds:.1f} s"
    else:
        how = f"built in {info.seconds:.1f} s" if info.seconds else "already up, nothing to heal"
    print(f"lab {info.name!r}: {len(info.nodes)} nodes on {info.subnet}, operator seat {info.seat_address} ({how})")
    for n in info.nodes:
        print(f"  {n.name:<14} {n.address:<15} ssh -i {info.key} -o UserKnownHostsFile={info.known_hosts} root@{n.address}")
    for line in info.healed:
        print(f"  healed: {line}")
    print(f"inventory: {info.inventory_path}")
    return 0


async def _down(args: argparse.Namespace) -> int:
    from core.lab.manager import lab_down

    removed = await asyncio.to_thread(lab_down, args.name)
    nodes = sum(1 for r in removed if r.startswith("node "))
    if removed:
        print(f"lab {args.name!r} is down: removed {nodes} node(s), "
              f"{sum(1 for r in removed if r.startswith(('netns', 'link')))} namespace(s)/link(s) and its state")
    else:
        print(f"lab {args.name!r} was not up: nothing to remove")
    return 0


async def _status(args: argparse.Namespace) -> int:
    from core.lab.manager import lab_status

    st = await lab_status(args.name)
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print(f"lab {st['name']!r}, inventory {st['inventory']}")
        for n in st["nodes"]:
            print(f"  {n['name']:<14} {n['address']:<15} {'reachable' if n['reachable'] else 'UNREACHABLE'}")
    return 0 if all(n["reachable"] for n in st["nodes"]) else 1
