"""Runbook step 8: VXLAN frames of the network are seen on the underlay between the right addresses.

:func:`verify_vxlan` captures on every node's underlay while the probes ping each other, and checks
that for every pair of nodes hosting a container on the network, frames went from one node to the
other carrying the network's VNI, with the outer addresses of those two nodes and the inner
addresses of the containers on them. :func:`collect_frames` (capture while something runs) is
shared with the tests.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from core.errors import OverlayError
from core.model import Frame, NetworkInfo, StepState

TITLE = "VXLAN frames of `{}` are seen on the underlay"


async def collect_frames(service: Any, nodes: list[str], during: Awaitable | None = None, *,
                         seconds: float = 3.0, tail: float = 0.3, limit: int = 100_000,
                         **opts) -> tuple[list[Frame], list[str]]:
    """Capture on ``nodes`` while ``during`` runs (then ``tail`` s more), or for ``seconds``.

    Returns the frames and the notices. ``during`` starts only once every remote tcpdump listens.
    """
    frames: list[Frame] = []
    notices: list[str] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for batch in service.capture(nodes, **opts):
            started.set()
            frames.extend(batch.frames)
            notices.extend(batch.notices)
            if len(frames) >= limit:
                return

    reader = asyncio.create_task(consume())
    try:
        done, _ = await asyncio.wait({reader, asyncio.create_task(started.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            reader.result()                     # raises the start error (CaptureError ...)
            return frames, notices
        if during is not None:
            await during
            await asyncio.sleep(tail)
        else:
            await asyncio.sleep(seconds)
    finally:
        if not reader.done():
            reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
    return frames, notices


def check_frames(frames: list[Frame], net: NetworkInfo, node_addr: dict[str, str]) -> tuple[bool, str]:
    """Do ``frames`` show ``net``'s VNI between every pair of nodes hosting its containers?

    ``node_addr`` maps node name -> underlay address. Returns (ok, one-sentence detail).
    """
    hosts: dict[str, dict[str, str]] = {}          # node -> inner ip -> container
    for c in net.containers:
        if c.ip:
            hosts.setdefault(c.node, {})[c.ip.split("/")[0]] = c.name
    pairs = {(a, b) for a in hosts for b in hosts if a != b and a in node_addr and b in node_addr}
    if not pairs:
        return False, (f"{net.name} has containers on {len(hosts)} node(s) ({', '.join(sorted(hosts)) or 'none'}): "
                       "no pair of nodes to carry VXLAN between")
    ours = [f for f in frames if f.vni == net.vni]
    seen: dict[tuple[str, str], int] = {}
    wrong: list[str] = []
    for f in ours:
        pair = next(((a, b) for (a, b) in pairs if node_addr[a] == f.outer_src and node_addr[b] == f.outer_dst), None)
        if pair is None:
            continue
        a, b = pair
        if f.proto == "ARP" or not (f.inner_src in hosts[a] and f.inner_dst in hosts[b]):
            if f.proto != "ARP" and f.inner_src not in hosts[a]:
                wrong.append(f"{f.outer_src}>{f.outer_dst} inner {f.inner_src}>{f.inner_dst}")
            continue
        seen[pair] = seen.get(pair, 0) + 1
    missing = sorted(pairs - set(seen))
    other = len(frames) - len(ours)
    if missing:
        miss = ", ".join(f"{a}->{b} ({node_addr[a]}->{node_addr[b]})" for a, b in missing)
        extra = f"; mismatched inner addresses: {', '.join(wrong[:3])}" if wrong else ""
        return False, (f"no VXLAN frame with VNI {net.vni} ({net.name}) from container to container seen for "
                       f"{miss}; {len(ours)} frame(s) of VNI {net.vni}, {other} other{extra}")
    per = ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(seen.items()))
    return True, (f"VNI {net.vni} ({net.name}) seen between every pair of nodes with the right outer "
                  f"and inner addresses ({per} frames)")


async def verify_vxlan(service: Any, network: str = "demo", seconds: float = 15.0) -> StepState:
    """Capture on every node while the probes ping; ok when ``network``'s VNI crosses every pair.

    ``seconds`` bounds the capture (the ping round normally ends well before).
    """
    state = StepState(id="vxlan", title=TITLE.format(network))
    try:
        net = next((n for n in await service.networks() if n.name == network), None)
        if net is None:
            state.ok, state.detail = False, f"network {network} does not exist"
            return state
        if net.vni is None:
            state.ok, state.detail = False, f"the VNI of {network} is unknown (not in Docker's store nor in inspect)"
            return state
        nodes = [n.name for n in service.inventory.nodes]
        node_addr = {n.name: n.advertise or n.address for n in service.inventory.nodes}
        pings = asyncio.wait_for(service.ping_matrix(), seconds)
        frames, notices = await collect_frames(service, nodes, pings, tail=0.3)
    except (TimeoutError, OverlayError) as e:
        state.ok, state.detail = False, str(e) or f"the probes' pings did not end within {seconds:g} s"
        return state
    state.ok, state.detail = check_frames(frames, net, node_addr)
    ended = [n for n in notices if "capture ended" in n]
    if ended and not state.ok:
        state.detail += "; " + "; ".join(ended)
    return state
