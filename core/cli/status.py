"""`overlay-tui status`: nodes, etcd members with health and leader, networks per node.

Exits 1 when anything is unhealthy (a node unreachable over SSH, a dockerd that does not answer, etcd
degraded or without quorum, networks unreadable); ``problems`` in the JSON says what, one sentence each.
Every node is asked concurrently with its own timeout, so a node that does not answer costs its own
timeout, not the others'.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict

from core.cli.run import run_async
from core.service import Service


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="nodes, etcd members and networks")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=lambda args: run_async(_status(args)))


async def _status(args: argparse.Namespace) -> int:
    from core.live import LiveService

    svc = LiveService.open(args.inventory)
    try:
        # nodes, etcd and networks fan out together: status costs about one round trip, not N
        nodes, extra = await asyncio.gather(svc.nodes(), _control_plane(svc))
    finally:
        await svc.close()
    problems = find_problems(nodes, extra)
    if args.json:
        print(json.dumps({"inventory": svc.inventory.path, "healthy": not problems, "problems": problems,
                          "nodes": [asdict(n) for n in nodes], **extra}, indent=2))
    else:
        for n in nodes:
            state = f"reachable {n.latency_ms} ms" if n.reachable else f"UNREACHABLE: {n.error}"
            print(f"{n.name:<16} {n.address:<16} {state}")
            if n.reachable:
                print(f"{'':16} hostname={n.hostname} kernel={n.kernel} docker={n.docker_version} "
                      f"store={n.store_mode} etcd={n.etcd_state}")
                if n.etcd_last_error:
                    print(f"{'':16} etcd stopped; last fatal line of /var/log/etcd.log: {_clean(n.etcd_last_error)}")
        _print_control_plane(extra)
        print("\nhealthy" if not problems else "\nUNHEALTHY:\n" + "\n".join(f"  {p}" for p in problems))
    return 0 if not problems else 1


def find_problems(nodes: list, extra: dict) -> list[str]:
    """One sentence per unhealthy thing (empty: all healthy)."""
    from core.etcd.health import UNKNOWN

    out = []
    for n in nodes:
        if not n.reachable:
            out.append(f"{n.name}: unreachable over SSH ({n.error})")
        elif n.docker_version is None:
            out.append(f"{n.name}: dockerd does not answer ({n.error or 'no answer'})")
    etcd = extra.get("etcd", {})
    members = etcd.get("members", [])
    known = [m for m in members if m.get("error") != UNKNOWN]
    healthy = [m for m in known if m.get("healthy")]
    if not members:
        out.append(f"etcd: no member answered ({etcd.get('error') or 'no members'})")
    elif len(healthy) * 2 <= len(members):
        out.append(f"etcd: quorum lost ({len(healthy)} of {len(members)} members healthy; a majority is needed)")
    elif len(healthy) < len(known) or (not etcd.get("healthy") and len(known) == len(members)):
        bad = [m.get("name") or m.get("id") or "?" for m in known if not m.get("healthy")]
        out.append(f"etcd: degraded (unhealthy: {', '.join(bad) or etcd.get('error') or 'no leader'})")
    if extra.get("networks_error"):
        out.append(f"networks: {extra['networks_error']}")
    return out


async def _control_plane(svc: Service) -> dict:
    """etcd and networks, concurrently; each part fails on its own without hiding the rest."""
    cluster, listing = await asyncio.gather(svc.etcd_cluster(), svc.network_listing(), return_exceptions=True)
    out: dict = {}
    if isinstance(cluster, BaseException):
        out["etcd"] = {"members": [], "healthy": False, "error": str(cluster)}
    else:
        out["etcd"] = asdict(cluster)
    if isinstance(listing, BaseException):
        out["networks"], out["networks_error"] = [], str(listing)
    else:
        out["networks"] = [asdict(n) for n in listing.networks]
        out["network_problems"] = dict(listing.problems)    # node (or "vni") -> why its networks are missing
    return out


def _print_control_plane(extra: dict) -> None:
    if not extra:
        return
    etcd = extra["etcd"]
    print("\netcd:" + (f" {etcd['error']}" if etcd.get("error") else ""))
    if etcd.get("warning"):
        print(f"  WARNING: {etcd['warning']}")
    elif etcd.get("tls"):
        print("  TLS: members answer over https and require a client certificate")
    for line in etcd.get("summary", []):
        print(f"  {line}")
    print("\nnetworks:" + (f" {extra['networks_error']}" if extra.get("networks_error") else ""))
    for n in extra["networks"]:
        print(f"  {n['name']:<16} {n['id'][:12]} {n['driver']:<8} {n['scope']:<7} vni={n['vni']} "
              f"subnet={n['subnet']} nodes={','.join(n['nodes'])}")
    for where, why in extra.get("network_problems", {}).items():
        print(f"  {where}: {_clean(why)}")
    sys.stdout.flush()


def _clean(text: str) -> str:
    """Text from the nodes without control characters (terminal escapes)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
