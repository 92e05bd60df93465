"""`overlay-tui status`: nodes, etcd members with health and leader, networks per node."""
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
    if args.json:
        print(json.dumps({"inventory": svc.inventory.path, "nodes": [asdict(n) for n in nodes], **extra}, indent=2))
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
    return 0 if all(n.reachable for n in nodes) else 1


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
