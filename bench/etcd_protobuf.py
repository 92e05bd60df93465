"""python-etcd3 under the two known ways round protobuf >= 4: the <4 pin, or protobuf 5 in pure Python.

etcd3 0.12.0 fails to import under protobuf >= 4's default (upb) implementation. The ways out:
  A. pin protobuf>=3.20,<4 (what pyproject does);
  B. protobuf 5 with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python.
Each runs in its own subprocess against a real 3-member cluster (a fresh lab, connecting directly
from the operator seat so SSH is not in the figures): import time, a members+status round over every
endpoint, and decoding the responses alone (CPU only). The active implementation is printed as
``api_implementation.Type()`` reports it. B's protobuf 5 is pip-installed with ``--target`` into
~/.cache/overlay-tui-bench/protobuf5 (not into the venv) the first time.
Needs root (the lab). Run: .venv/bin/python bench/etcd_protobuf.py [--rounds N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PB5_DIR = Path.home() / ".cache/overlay-tui-bench/protobuf5"

CHILD = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
import etcd3
from etcd3 import etcdrpc
import_ms = (time.perf_counter() - t0) * 1000
import google.protobuf
from google.protobuf.internal import api_implementation
endpoints, rounds = json.loads(sys.argv[1]), int(sys.argv[2])
clients = [etcd3.client(h, p, timeout=5) for h, p in endpoints]
def one_round():
    for c in clients:
        list(c.members)
        c.status()          # Status + its own MemberList (python-etcd3 resolves the leader that way)
one_round()
times = []
for _ in range(rounds):
    t = time.perf_counter(); one_round(); times.append((time.perf_counter() - t) * 1000)
st = clients[0].maintenancestub.Status(etcdrpc.StatusRequest(), 5).SerializeToString()
ml = clients[0].clusterstub.MemberList(etcdrpc.MemberListRequest(), 5).SerializeToString()
n = 20000
t = time.perf_counter()
for _ in range(n):
    etcdrpc.StatusResponse.FromString(st); etcdrpc.MemberListResponse.FromString(ml)
decode_us = (time.perf_counter() - t) / n * 1e6
print(json.dumps({"protobuf": google.protobuf.__version__, "impl": api_implementation.Type(),
                  "import_ms": import_ms, "round_ms": statistics.median(times), "decode_us": decode_us}))
"""


def run_child(label: str, env_extra: dict[str, str], endpoints, rounds: int) -> dict | None:
    env = {**os.environ, **env_extra}
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(endpoints), str(rounds)], env=env,
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines() or ["no output"]
        last = next((ln for ln in lines if "Error" in ln), lines[-1])
        print(f"  {label:<62} FAILS: {last}")
        return None
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"  {label:<62} protobuf {out['protobuf']:<7} impl={out['impl']:<7} import {out['import_ms']:6.0f} ms  "
          f"members+status round {out['round_ms']:6.2f} ms  decode {out['decode_us']:6.1f} us")
    return out


def ensure_protobuf5() -> None:
    if not (PB5_DIR / "google/protobuf/__init__.py").is_file():
        print(f"installing protobuf 5 into {PB5_DIR} (not the venv) ...")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(PB5_DIR),
                        "protobuf>=5.26,<6"], check=True)


async def cluster_endpoints(lab: str) -> list[tuple[str, int]]:
    from core.lab.manager import lab_up
    from core.live import LiveService

    info = await lab_up(lab, 3)
    svc = LiveService(info.inventory())
    try:
        await svc.etcd_apply()
        return [(ep.host, ep.port) for ep in await svc.etcd.endpoints()]
    finally:
        await svc.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    from core.lab.manager import lab_down

    ensure_protobuf5()
    lab = f"bpb{os.getpid() % 100000}"
    t0 = time.monotonic()
    endpoints = asyncio.run(cluster_endpoints(lab))
    print(f"lab {lab}: 3 etcd members in {time.monotonic() - t0:.1f} s; {args.rounds} rounds over {len(endpoints)} "
          "endpoints (median)")
    try:
        pin = run_child("A. protobuf<4 pin (as installed)", {}, endpoints, args.rounds)
        py5 = run_child("B. protobuf 5 + PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python",
                        {"PYTHONPATH": str(PB5_DIR), "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"},
                        endpoints, args.rounds)
        run_child("(protobuf 5 default upb, no env var)", {"PYTHONPATH": str(PB5_DIR)}, endpoints, 1)
        if pin and py5:
            print(f"  ratio B/A: round {py5['round_ms'] / pin['round_ms']:.2f}x, decode "
                  f"{py5['decode_us'] / pin['decode_us']:.2f}x, import {py5['import_ms'] / pin['import_ms']:.2f}x")
    finally:
        lab_down(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
