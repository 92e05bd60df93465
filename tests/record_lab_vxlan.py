"""Record tests/fixtures/lab_vxlan.pcap (+ .json sidecar) from a real lab with the runbook applied.

    .venv/bin/python tests/record_lab_vxlan.py --inventory /var/lib/overlay-tui/labs/lab/inventory.toml

Captures on every node's underlay while the probes ping each other (the runbook's ping matrix),
keeps at most ``--max`` frames, writes them as a classic pcap and writes what they must decode to
(VNI, network, node and container addresses) next to it as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.capture.names import names_to_json  # noqa: E402
from core.capture.verify import collect_frames  # noqa: E402
from core.live import LiveService  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "lab_vxlan.pcap"


async def record(inventory: str, out: Path, limit: int) -> dict:
    svc = LiveService.open(inventory)
    try:
        net = next(n for n in await svc.networks() if n.name == svc.inventory.cluster.network)
        frames, _ = await collect_frames(svc, [], svc.ping_matrix())
        frames = frames[:limit]
        await svc.save_pcap(frames, str(out), replace=True)     # re-recording the fixture replaces it
        names = await svc.names()
        side = {"vni": net.vni, "network": net.name, "subnet": net.subnet, "frames": len(frames),
                "nodes": {n.name: n.advertise for n in svc.inventory.nodes},
                "containers": {c.ip.split("/")[0]: {"name": c.name, "node": c.node, "mac": c.mac}
                               for c in net.containers if c.ip},
                "names": names_to_json(names)}
        out.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
        return side
    finally:
        await svc.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inventory", required=True)
    p.add_argument("--out", default=str(FIXTURE))
    p.add_argument("--max", type=int, default=48)
    a = p.parse_args()
    side = asyncio.run(record(a.inventory, Path(a.out), a.max))
    print(f"wrote {side['frames']} frames of VNI {side['vni']} ({side['network']}) to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
