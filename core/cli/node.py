"""`overlay-tui node remove NAME`: take a node out of the cluster (see :mod:`core.nodes.remove`).

A node is added by adding a ``[[node]]`` table to the inventory (the lab: `lab up --nodes N`) and
running `overlay-tui runbook apply`: it joins as an etcd member (member-add, state existing) when the
sizing wants one there, else as a store client.
"""
from __future__ import annotations

import argparse
import sys

from core.cli.run import run_async
from core.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="take a node out of the cluster (add one: inventory + runbook apply)")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION", required=True, parser_class=type(p))
    rm = nsub.add_parser("remove", help="remove NAME's etcd member (keeping quorum), store config, probe and "
                                        "inventory entry (asks first)")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--yes", action="store_true", help="do not ask")
    rm.set_defaults(func=lambda a: run_async(_remove(a)))


def _confirm(name: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(f"removing {name} needs confirmation: add --yes (no terminal to ask on)")
    answer = input(f"Remove {name} from the cluster (its etcd member, store config and probe) and from the "
                   "inventory? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was removed")


async def _remove(args: argparse.Namespace) -> int:
    from core.live import LiveService

    if not args.yes:
        _confirm(args.name)
    svc = LiveService.open(args.inventory)
    try:
        done = await svc.remove_node(args.name)
    finally:
        await svc.close()
    for line in done:
        print(line)
    print(f"{args.name} removed; `overlay-tui runbook apply` adds an etcd member elsewhere if the sizing wants one")
    return 0
