"""Record tests/fixtures/links_lab.pcap (+ .json sidecar with the names): a two-ended capture for links.

    .venv/bin/python tests/record_links.py --inventory INV --lab NAME [--percent 25] [--pings 30]

Captures on every node of a lab with the runbook applied while the probes ping each other, with
``--percent`` of the first node's VXLAN frames dropped in the lab switch (nftables, removed after),
and writes the frames, both sightings of each, as one pcap (see core.links.replay for how it is read).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import aclosing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_links_lab import dropping, flood  # noqa: E402

from core.capture.names import names_to_json  # noqa: E402
from core.live import LiveService  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "links_lab.pcap"


async def record(inventory: str, lab: str, percent: int, out: Path, pings: int) -> int:
    svc = LiveService.open(inventory)
    frames = []
    try:
        node1 = svc.inventory.nodes[0]
        with dropping(lab, node1.advertise or node1.address, percent):
            started = asyncio.Event()

            async def collect() -> None:
                async with aclosing(svc.capture([])) as batches:
                    async for batch in batches:
                        started.set()
                        frames.extend(batch.frames)
            task = asyncio.create_task(collect())
            await started.wait()
            await flood(svc, count=pings, gap=0.02)
            await asyncio.sleep(1.5)             # the last replies and the merger's window (a script, not a test)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        frames = [f for f in frames if f.vni is not None]
        await svc.save_pcap(frames, str(out), replace=True)     # re-recording the fixture replaces it
        names = await svc.names()
        out.with_suffix(".json").write_text(json.dumps({"frames": len(frames), "dropped_percent": percent,
                                                        "dropped_from": node1.name,
                                                        "names": names_to_json(names)}, indent=1) + "\n")
        return len(frames)
    finally:
        await svc.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inventory", required=True)
    p.add_argument("--lab", required=True)
    p.add_argument("--percent", type=int, default=25)
    p.add_argument("--pings", type=int, default=30, help="pings from every probe to every other")
    p.add_argument("--out", default=str(FIXTURE))
    a = p.parse_args()
    n = asyncio.run(record(a.inventory, a.lab, a.percent, Path(a.out), a.pings))
    print(f"wrote {n} frames to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
