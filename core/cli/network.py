"""`overlay-tui network ls|create|delete`: the cluster's networks, merged over every node.

``delete`` asks for confirmation on a terminal; without a terminal it needs ``--yes``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from core.cli.run import run_async
from core.errors import DockerError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("network", help="list, create and delete overlay networks")
    nsub = p.add_subparsers(dest="network_command", metavar="ACTION", required=True)
    ls = nsub.add_parser("ls", help="every network of every node, merged by ID")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(func=lambda a: run_async(_ls(a)))
    create = nsub.add_parser("create", help="create an overlay network and wait until every node sees it")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--subnet", metavar="CIDR", help="e.g. 198.19.10.0/24 (default: Docker chooses)")
    create.add_argument("--node", metavar="NODE", help="node to create it on (default: the first)")
    create.add_argument("--no-attachable", dest="attachable", action="store_false",
                        help="do not let standalone containers attach (swarm mode only)")
    create.add_argument("--json", action="store_true", help="print the convergence result as JSON")
    create.set_defaults(func=lambda a: run_async(_create(a)))
    delete = nsub.add_parser("delete", help="delete an overlay network (asks first)")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--remove-probes", action="store_true",
                        help="first remove overlay-tui's probe containers attached to it")
    delete.set_defaults(func=lambda a: run_async(_delete(a)))


def _open(args: argparse.Namespace):
    from core.live import LiveService

    return LiveService.open(args.inventory, read_only=args.read_only)


async def _ls(args: argparse.Namespace) -> int:
    svc = _open(args)
    try:
        listing = await svc.network_listing()
        for problem in listing.problems.values():     # unreachable nodes, VNIs not readable
            print(f"overlay-tui: warning: {problem}", file=sys.stderr)
        nets = listing.networks
    finally:
        await svc.close()
    try:
        _print_networks(nets, args.json)
    except BrokenPipeError:                  # `network ls | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")
    return 0


def _print_networks(nets, as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(n) for n in nets], indent=2))
        return
    print(f"{'NAME':<20} {'ID':<12} {'DRIVER':<8} {'SCOPE':<7} {'SUBNET':<18} {'VNI':<6} NODES / CONTAINERS")
    for n in nets:
        print(f"{n.name:<20} {n.id[:12]:<12} {n.driver:<8} {n.scope:<7} {n.subnet or '-':<18} "
              f"{n.vni if n.vni is not None else '-':<6} {','.join(n.nodes)}")
        for c in n.containers:
            print(f"{'':<75} {c.name}@{c.node} {c.ip or '-'} {c.mac or '-'}")
    sys.stdout.flush()


async def _create(args: argparse.Namespace) -> int:
    svc = _open(args)
    try:
        res = await svc.create_network(args.name, subnet=args.subnet, attachable=args.attachable, node=args.node)
    finally:
        await svc.close()
    if args.json:
        print(json.dumps(asdict(res), indent=2))
    missing = [n for n, ok in res.nodes.items() if not ok]
    if missing:
        print(f"overlay-tui: created {res.network} ({res.id[:12]}) but it is not visible with scope global on "
              f"{', '.join(missing)} after {res.seconds:g} s", file=sys.stderr)
        return 1
    if not args.json:
        print(f"created overlay network {res.network} ({res.id[:12]}); visible with scope global on "
              f"{', '.join(res.nodes)} after {res.seconds * 1000:.0f} ms")
    return 0


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError("deleting a network needs confirmation: add --yes (no terminal to ask on)")
    answer = input(f"{question} [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was deleted")


async def _delete(args: argparse.Namespace) -> int:
    svc = _open(args)
    try:
        found = [n for n in await svc.networks() if n.name == args.name and n.driver == "overlay"]
        if not found:
            raise DockerError(f"no overlay network named {args.name!r} on any node")
        net = found[0]
        if not args.yes:
            probes = " and its probe containers" if args.remove_probes else ""
            _confirm(f"Delete overlay network {net.name} ({net.id[:12]}, on {', '.join(net.nodes)}){probes}?")
        if args.remove_probes:
            for removed in await svc.remove_probes(net.name):
                print(f"removed probe {removed}")
        await svc.delete_network(net.name)
    finally:
        await svc.close()
    print(f"deleted overlay network {net.name} ({net.id[:12]})")
    return 0
