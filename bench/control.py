"""Control-plane benchmarks on fresh labs: each section prints its figures (medians), no assertions.

Sections register themselves with ``@section("name", nodes=N)`` and receive a
:class:`BenchLab` (a fresh lab of N nodes, its inventory and a LiveService on it); labs are shared
by the sections that ask for the same N and run in registration order, so a section that needs
etcd and Docker configured calls :meth:`BenchLab.classic` (idempotent: the first caller pays).
Needs root. Run: .venv/bin/python bench/control.py [--runs N] [--only NAME ...]

etcd sections: ``etcd_apply`` (2 and 3 nodes: fresh apply until healthy, then the adopt no-op),
``status`` (2, 3, 5 nodes: one node's round trip against all N fanned out, warm and as a CLI process),
``etcd_forward`` (etcd reads through SSH-forwarded ports against direct connections).

``runbook_apply`` (2 and 3 nodes): the whole runbook from a fresh lab of its own, then the no-op.

Docker sections: ``docker_store_apply`` (fresh: write daemon.json and restart dockerd on every
node; again: the no-op check) and ``network_convergence`` (create an overlay network on node 1
until every node shows it with the same ID and scope global; median of --runs).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core.lab.manager import lab_down, lab_up
from core.live import LiveService


@dataclass
class BenchLab:
    """A fresh lab for benchmarks and the service on it."""

    name: str
    nodes: int
    svc: LiveService
    runs: int
    done: set[str] = field(default_factory=set)     # setup steps already paid for (e.g. "etcd", "docker")

    async def classic(self) -> None:
        """etcd on every node and Docker on the cluster store (each done once per lab)."""
        if "etcd" not in self.done:
            await self.svc.etcd_apply()
            self.done.add("etcd")
        if "docker" not in self.done:
            await self.svc.docker_store_apply()
            self.done.add("docker")


Section = Callable[[BenchLab], Awaitable[None]]
SECTIONS: list[tuple[str, int, Section]] = []


def section(name: str, nodes: int = 2) -> Callable[[Section], Section]:
    def register(fn: Section) -> Section:
        SECTIONS.append((name, nodes, fn))
        return fn
    return register


def report(label: str, values: list[float], unit: str = "s") -> None:
    runs = " ".join(f"{v:.3f}" for v in values)
    print(f"  {label:<44} median {statistics.median(values):8.3f} {unit}   runs: {runs}")


# --- etcd and status ------------------------------------------------------------------------
async def timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    """Milliseconds of ``runs`` sequential awaits of ``fn()``."""
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        await fn()
        out.append((time.monotonic() - t0) * 1000)
    return out


async def _etcd_once(lab: BenchLab) -> None:
    if "etcd" not in lab.done:
        await lab.svc.etcd_apply()
        lab.done.add("etcd")


async def bench_etcd_apply(lab: BenchLab) -> None:
    """Fresh etcd apply (inspect, start detached, wait healthy) and the second apply (adopt)."""
    if "etcd" in lab.done:
        print("  (etcd already applied on this lab: fresh apply not measured)")
    else:
        t0 = time.monotonic()
        cluster = (await lab.svc.etcd_apply()).cluster
        report(f"fresh etcd apply, {lab.nodes} nodes, until healthy", [time.monotonic() - t0])
        assert cluster.healthy, cluster.summary
        lab.done.add("etcd")
    again = []
    for _ in range(lab.runs):
        t0 = time.monotonic()
        applied = await lab.svc.etcd_apply()
        again.append(time.monotonic() - t0)
        assert {a.kind for a in applied.actions} == {"adopt"}
    report("second etcd apply (adopt, no change)", again)


async def bench_status(lab: BenchLab) -> None:
    """`status` on N nodes: nodes, etcd and networks fan out, so it costs ~one round trip, not N."""
    import subprocess

    from core.cli.status import _control_plane

    await _etcd_once(lab)
    svc = lab.svc
    one = svc.inventory.nodes[0].name
    eps = await svc.etcd.endpoints()
    reader = svc.etcd_reader
    await svc.nodes()
    await svc.etcd_cluster()
    report("one node's facts (one SSH round trip)", await timed(lambda: svc.node_status(one), lab.runs), "ms")
    report("one etcd endpoint (status + health + members)", await timed(lambda: reader.probe(eps[0]), lab.runs), "ms")
    report(f"nodes(), {lab.nodes} nodes", await timed(svc.nodes, lab.runs), "ms")
    report(f"etcd_cluster(), {lab.nodes} members", await timed(svc.etcd_cluster, lab.runs), "ms")
    report(f"status (nodes + etcd + networks), warm, {lab.nodes} nodes",
           await timed(lambda: asyncio.gather(svc.nodes(), _control_plane(svc)), lab.runs), "ms")
    cli = os.path.join(os.path.dirname(sys.executable), "overlay-tui")
    walls = []
    for _ in range(min(lab.runs, 3)):
        t0 = time.monotonic()
        subprocess.run([cli, "--inventory", svc.inventory.path, "status", "--json"], capture_output=True,
                       timeout=120, check=False)
        walls.append((time.monotonic() - t0) * 1000)
    report("`overlay-tui status --json` (process, cold SSH)", walls, "ms")


async def bench_etcd_forward(lab: BenchLab) -> None:
    """etcd reads through SSH local port forwards (the default) against direct connections."""
    from core.etcd.read import EtcdReader

    await _etcd_once(lab)
    eps = await lab.svc.etcd.endpoints()
    for via_ssh in (True, False):
        reader = EtcdReader(lab.svc.pool, via_ssh=via_ssh, credentials=lab.svc.pki.operator)
        try:
            first = await timed(partial(reader.cluster, eps), 1)
            warm = await timed(partial(reader.cluster, eps), lab.runs * 4)
        finally:
            await reader.close()
        how = "via SSH forward" if via_ssh else "direct"
        report(f"etcd cluster read {how}: first (connect)", first, "ms")
        report(f"etcd cluster read {how}: warm", warm, "ms")


for _n in (2, 3):
    section("etcd_apply", nodes=_n)(bench_etcd_apply)
for _n in (2, 3, 5):
    section("status", nodes=_n)(bench_status)
section("etcd_forward", nodes=3)(bench_etcd_forward)


# --- Docker --------------------------------------------------------------------------------
@section("docker_store_apply", nodes=2)
@section("docker_store_apply", nodes=3)
async def bench_docker_store_apply(lab: BenchLab) -> None:
    if "etcd" not in lab.done:
        await lab.svc.etcd_apply()
        lab.done.add("etcd")
    if "docker" in lab.done:
        print("  (Docker already configured on this lab: fresh apply not measured)")
    else:
        t0 = time.monotonic()
        changes = await lab.svc.docker_store_apply()
        report(f"fresh apply, {lab.nodes} nodes (daemon.json + restart)", [time.monotonic() - t0])
        print("    per node: " + ", ".join(f"{c.node} {c.action} {c.seconds} s" for c in changes))
        lab.done.add("docker")
    again = []
    for _ in range(lab.runs):
        t0 = time.monotonic()
        changes = await lab.svc.docker_store_apply()
        again.append(time.monotonic() - t0)
        assert all(c.action == "none" for c in changes), changes
    report("second apply (no-op check)", again)


@section("network_convergence", nodes=2)
@section("network_convergence", nodes=3)
async def bench_network_convergence(lab: BenchLab) -> None:
    await lab.classic()
    converge, total = [], []
    for i in range(lab.runs):
        name = f"bench-conv-{i}"
        t0 = time.monotonic()
        res = await lab.svc.create_network(name, subnet=f"198.19.{120 + i % 40}.0/24")
        total.append(time.monotonic() - t0)
        converge.append(res.seconds)
        assert all(res.nodes.values()), res
        await lab.svc.delete_network(name)
    report(f"new network visible on all {lab.nodes} nodes", [c * 1000 for c in converge], "ms")
    report("create_network call (checks + create + converge)", [t * 1000 for t in total], "ms")


@section("ping_matrix", nodes=3)
async def bench_ping_matrix(lab: BenchLab) -> None:
    """Probes on every node (first start pays the image import), then the full matrix by name and address."""
    await lab.classic()
    await lab.svc.create_network("bench-ping", subnet="198.19.170.0/24")
    try:
        t0 = time.monotonic()
        await lab.svc.start_probes("bench-ping")
        report(f"start_probes, {lab.nodes} nodes (image import + run)", [time.monotonic() - t0])
        t0 = time.monotonic()       # the overlay's gossip may need a moment to resolve every peer
        while not all(r.loss == 0 for r in await lab.svc.ping_matrix()) and time.monotonic() - t0 < 30:
            await asyncio.sleep(1)
        report("time until every pair answers", [time.monotonic() - t0])
        times = []
        for _ in range(lab.runs):
            t0 = time.monotonic()
            results = await lab.svc.ping_matrix()
            times.append((time.monotonic() - t0) * 1000)
            assert len(results) == lab.nodes * (lab.nodes - 1) * 2 and all(r.loss == 0 for r in results), results
        report("ping matrix, every pair by name and address", times, "ms")
    finally:
        await lab.svc.remove_probes("bench-ping")
        await lab.svc.delete_network("bench-ping")


# --- the whole runbook ----------------------------------------------------------------------
async def bench_runbook_apply(lab: BenchLab) -> None:
    """`runbook apply` from a fresh lab of its own (all 8 steps), then again (nothing to do)."""
    name = f"{lab.name}rb"
    info = await lab_up(name, lab.nodes)
    svc = LiveService(info.inventory())
    try:
        for label in ("fresh", "second (no change)"):
            t0 = time.monotonic()
            steps = {}
            async for ev in svc.runbook_apply():
                steps[ev.step.id] = ev.step
            took = time.monotonic() - t0
            failed = [f"{s.id}: {s.detail}" for s in steps.values() if s.ok is False]
            assert not failed and len(steps) == 8, failed or sorted(steps)
            report(f"runbook apply, {label}, {lab.nodes} nodes, 8 steps", [took])
    finally:
        await svc.close()
        lab_down(name)


for _n in (2, 3):
    section("runbook_apply", nodes=_n)(bench_runbook_apply)


# --- driver ------------------------------------------------------------------------------
async def run_sections(chosen: list[tuple[str, int, Section]], runs: int) -> None:
    for nodes in sorted({n for _, n, _ in chosen}):
        name = f"bctl{os.getpid() % 100000}n{nodes}"
        t0 = time.monotonic()
        info = await lab_up(name, nodes)
        print(f"== lab {name}: {nodes} nodes up in {time.monotonic() - t0:.2f} s")
        svc = LiveService(info.inventory())
        lab = BenchLab(name=name, nodes=nodes, svc=svc, runs=runs)
        try:
            for sec_name, n, fn in chosen:
                if n == nodes:
                    print(f"[{sec_name}]")
                    await fn(lab)
        finally:
            await svc.close()
            lab_down(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", nargs="*", metavar="NAME", help=f"sections: {', '.join(s[0] for s in SECTIONS)}")
    args = ap.parse_args()
    chosen = [s for s in SECTIONS if not args.only or s[0] in args.only]
    print(f"control-plane benchmarks on this machine ({os.cpu_count()} cores), {args.runs} runs where repeated")
    asyncio.run(run_sections(chosen, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
