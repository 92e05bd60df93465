"""Benchmark: `overlay-tui capture --read FILE ...` as the user runs it, beside scapy and tshark.

Generates (deterministically, in a temp dir) three pcaps of FRAMES frames each (default 1,000,000)
with ~24, ~5k and ~100k flows: VXLAN frames of mixed sizes (inner payload 0-1400 bytes) and
protocols (ICMP, TCP, UDP, ARP, inner IPv6; outer IPv6 on ~10%; 802.1Q outer/inner and QinQ outer on
some), ~0.3% malformed (cut short) or not VXLAN, ~0.2% inner IPv4 fragments. Then it runs, as whole
processes (start-up included, wall clock, best of RUNS, page cache warm: each file is read once first):

  - `capture --read F --flows --json` on each file (checked: every flow and count equal to the
    per-frame reference decoder's, computed in this process);
  - `capture --read F --json` (per-frame streaming) on the 24-flow file (checked: one line a frame);
  - `overlay-tui --help` (start-up);
  - scapy dissecting every packet (PcapReader, field access) on the first SCAPY_FRAMES frames, and
    tshark's VXLAN dissector (`-T fields`) on the first TSHARK_FRAMES frames, each a whole process,
    scaled to frames/s (tshark is skipped, with a note, when it is not installed).

The command run is `.venv/bin/overlay-tui` of this checkout when it exists, else
`python -m tui.launcher` from this checkout (the same code, the same start-up).
Targets (issue 13): --flows --json >= 850k frames/s at every flow count; --json >= 300k frames/s;
--help < 150 ms.

    .venv/bin/python bench/decode.py [FRAMES]
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.capture.decode import VxlanDecoder  # noqa: E402
from core.capture.flows import FlowTable  # noqa: E402
from core.capture.format import flow_json  # noqa: E402
from core.capture.pcap import PcapFileReader, PcapWriter  # noqa: E402

FRAMES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
SCAPY_FRAMES = int(os.environ.get("SCAPY_FRAMES", "5000"))
TSHARK_FRAMES = int(os.environ.get("TSHARK_FRAMES", "50000"))
RUNS = int(os.environ.get("RUNS", "3"))
FLOW_TARGETS = (24, 5_000, 100_000)
MARK_FLOWS, MARK_FRAMES, MARK_HELP = 850_000, 300_000, 0.150


def command() -> tuple[list[str], str]:
    exe = ROOT / ".venv" / "bin" / "overlay-tui"
    if exe.exists():
        return [str(exe)], ".venv/bin/overlay-tui"
    return [sys.executable, "-m", "tui.launcher"], "python -m tui.launcher"


def templates() -> tuple[list[tuple[bytes, int, int]], list[bytes]]:
    """Frames built with scapy: (bytes, offset of the inner source's 3rd/4th bytes (the variant goes
    there), family); and bad frames. 8 inner (src, dst, proto) x 3 VNIs = 24 flows per variant."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    rnd = random.Random(7)
    inners = []
    for size in (0, 56, 200, 512, 1000, 1400):
        pay = Raw(bytes(size)) if size else Raw(b"")
        inners += [IP(src="10.77.0.2", dst="10.0.0.3") / ICMP() / pay,
                   IP(src="10.77.0.3", dst="10.0.0.2") / ICMP(type=0) / pay,
                   IP(src="10.77.1.5", dst="10.0.1.9") / TCP(sport=40000, dport=80, flags="PA") / pay,
                   IP(src="10.77.1.9", dst="10.0.1.5") / TCP(sport=80, dport=40000, flags="A") / pay,
                   IP(src="10.77.2.7", dst="10.0.2.8") / UDP(sport=5353, dport=53) / pay,
                   IPv6(src="fd77::2", dst="fd00::3") / ICMPv6EchoRequest() / pay,
                   IPv6(src="fd77::4", dst="fd00::5") / TCP(sport=1234, dport=443) / pay]
    inners.append(ARP(psrc="10.77.0.2", pdst="10.0.0.3"))
    out = []
    for inner in inners:
        for vni in (256, 257, 4097):
            r = rnd.random()
            o = Ether(src="02:00:c6:12:00:01", dst="02:00:c6:12:00:02")
            if r < 0.15:
                o = o / Dot1Q(vlan=100)
            elif r < 0.2:
                o = o / Dot1AD(vlan=300) / Dot1Q(vlan=100)
            outer_v6 = rnd.random() < 0.1
            o = o / (IPv6(src="2001:db8::1", dst="2001:db8::2") if outer_v6 else IP(src="198.18.0.1", dst="198.18.0.2"))
            ie = Ether(src="02:42:0a:00:00:02", dst="02:42:0a:00:00:03")
            if rnd.random() < 0.2:
                ie = ie / Dot1Q(vlan=7)
            raw = bytes(o / UDP(sport=rnd.randrange(32768, 61000), dport=4789) / VXLAN(vni=vni) / ie / inner)
            if inner.haslayer(IPv6):
                at, fam = raw.index(bytes.fromhex("fd77")) + 2, 6
            else:
                at, fam = raw.index(bytes([10, 77])) + 2, 4
            out.append((raw, at, fam))
    frag = bytes(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=40000, dport=4789) / VXLAN(vni=256)
                 / Ether() / IP(src="10.77.0.2", dst="10.0.0.3", flags="MF", frag=0) / UDP() / Raw(bytes(100)))
    frag_tail = bytes(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=40000, dport=4789)
                      / VXLAN(vni=256) / Ether() / IP(src="10.77.0.2", dst="10.0.0.3", proto=17, frag=13)
                      / Raw(bytes(100)))
    bad = [out[0][0][:60], out[5][0][:45], out[40][0][:90],
           bytes(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(dport=22)),
           bytes(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(dport=8472) / Raw(bytes(60)))]
    return out, bad + [frag, frag_tail]


def generate(path: Path, variants: int, frames: int = FRAMES, seed: int = 42) -> int:
    """``frames`` frames over ``variants`` x 24 flows (variant v rewrites 2 bytes of the inner source)."""
    good, bad = templates()
    rnd = random.Random(seed)
    ts, total = 1_700_000_000.0, 0
    rand, choice, randrange = rnd.random, rnd.choice, rnd.randrange
    n_good = len(good)
    with PcapWriter(path) as w:
        for _ in range(frames):
            ts += rand() * 1e-5
            r = rand()
            if r < 0.005:
                f = choice(bad)
            else:
                raw, at, _fam = good[randrange(n_good)]
                v = randrange(variants)
                f = raw[:at] + v.to_bytes(2, "big") + raw[at + 2:] if variants > 1 else raw
            w.write(ts, f)
            total += len(f)
    return total


def reference(path: Path) -> tuple[list[str], dict]:
    """The per-frame decoder and the dict flow table: what --flows --json must print, exactly."""
    dec, table = VxlanDecoder(), FlowTable()
    add, decode = table.add, dec.decode
    for ts, _c, wl, d in PcapFileReader(path):
        add(decode(d, ts, wl))
    return [json.dumps(flow_json(s)) for s in table.flows()], table.counts()


CPU: dict[str, float] = {}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def best_wall(argv: list[str], out_path: Path, runs: int = RUNS) -> tuple[float, subprocess.CompletedProcess]:
    """Best wall-clock time of ``runs`` runs; the CPU time (user + system, the command and any process
    it forks) of that best run goes to CPU[name of the output file]."""
    best, proc = float("inf"), None
    for _ in range(runs):
        with open(out_path, "wb") as out:
            c0, t0 = _children_cpu(), time.perf_counter()
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
            wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
            if wall < best:
                best, CPU[" ".join(argv)] = wall, cpu
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-400:]}")
    assert proc is not None
    return best, proc


def head(path: Path, n: int, out: Path) -> int:
    with PcapWriter(out) as w:
        for i, (ts, _c, wl, d) in enumerate(PcapFileReader(path)):
            if i >= n:
                break
            w.write(ts, d, wl)
        return w.count


SCAPY_SCRIPT = """
import sys, time
from scapy.utils import PcapReader
from scapy.layers.vxlan import VXLAN
from scapy.layers.inet import IP
flows = {}
with PcapReader(sys.argv[1]) as rd:
    for p in rd:
        v = p[VXLAN].vni if VXLAN in p else None
        ip = p[VXLAN][IP] if v is not None and IP in p[VXLAN] else None
        k = (v, ip.src if ip else None, ip.dst if ip else None, ip.proto if ip else None)
        flows[k] = flows.get(k, 0) + 1
print(len(flows))
"""


def main() -> int:
    argv0, how = command()
    print(f"command: {how}; {FRAMES:,} frames a file; whole process, wall clock, best of {RUNS}; page cache warm")
    rows = []
    with tempfile.TemporaryDirectory(prefix="overlay-bench-") as d:
        tmp = Path(d)
        files = {}
        for target in FLOW_TARGETS:
            path = tmp / f"flows{target}.pcap"
            t0 = time.perf_counter()
            nbytes = generate(path, max(1, round(target / 24)))
            files[target] = path
            print(f"generated {path.name}: {nbytes / FRAMES:.0f} bytes a frame on average, "
                  f"{path.stat().st_size / 1e6:.0f} MB, in {time.perf_counter() - t0:.1f} s")
        out = tmp / "out.txt"
        for path in files.values():
            want, counts = reference(path)
            wall, proc = best_wall(argv0 + ["capture", "--read", str(path), "--flows", "--json"], out)
            got = out.read_text().splitlines()
            exact = got == want
            rows.append((f"capture --read F --flows --json  ({counts['flows']:,} flows)", wall, FRAMES,
                         MARK_FLOWS, exact, CPU[" ".join(argv0 + ["capture", "--read", str(path), "--flows", "--json"])]))
            print(f"  {path.name}: {counts['flows']:,} flows, {counts['malformed']:,} malformed, "
                  f"{counts['not_vxlan']:,} not VXLAN; output equals the per-frame reference: {exact}")
        wall, proc = best_wall(argv0 + ["capture", "--read", str(files[24]), "--json"], out)
        with open(out, "rb") as fh:
            lines = sum(1 for _ in fh)
        rows.append(("capture --read F --json  (per-frame, 24 flows)", wall, FRAMES, MARK_FRAMES, lines == FRAMES,
                     CPU[" ".join(argv0 + ["capture", "--read", str(files[24]), "--json"])]))
        helps = [best_wall(argv0 + ["--help"], out, runs=1)[0] for _ in range(max(RUNS, 5))]
        startup = min(helps)
        sample = tmp / "sample.pcap"
        n = head(files[5000], SCAPY_FRAMES, sample)
        c0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run([sys.executable, "-c", SCAPY_SCRIPT, str(sample)], check=True, capture_output=True)
        rows.append((f"scapy PcapReader, per-packet dissection ({n:,} frames, scaled)",
                     time.perf_counter() - t0, n, None, None, _children_cpu() - c0))
        tshark = shutil.which("tshark")
        if tshark:
            n = head(files[5000], TSHARK_FRAMES, sample := tmp / "sample-tshark.pcap")
            c0, t0 = _children_cpu(), time.perf_counter()
            subprocess.run([tshark, "-n", "-r", str(sample), "-d", "udp.port==4789,vxlan", "-T", "fields",
                            "-e", "vxlan.vni", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto", "-e", "frame.len"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows.append((f"tshark -T fields, VXLAN dissector ({n:,} frames, scaled)", time.perf_counter() - t0, n,
                         None, None, _children_cpu() - c0))
        else:
            print("note: tshark is not installed (apt-get install tshark): its row is skipped")
    scapy_rate = rows[-2 if tshark else -1][2] / rows[-2 if tshark else -1][1]
    print(f"\n{'what (whole process)':62} {'wall s':>7} {'frames/s':>10} {'x scapy':>8} {'CPU s':>6} "
          f"{'frames/CPU s':>12}  target (wall clock)")
    ok_all = True
    for name, wall, n, mark, exact, cpu in rows:
        rate = n / wall
        verdict = ""
        if mark is not None:
            met = rate >= mark and bool(exact)
            ok_all &= met
            verdict = f">= {mark:,}: {'met' if met else 'NOT met'}{'' if exact else ' (output NOT exact)'}"
        print(f"{name:62} {wall:7.2f} {rate:10,.0f} {rate / scapy_rate:8.0f} {cpu:6.2f} {n / cpu:12,.0f}  {verdict}")
    met = startup < MARK_HELP
    ok_all &= met
    print(f"{'overlay-tui --help (start-up), best of ' + str(max(RUNS, 5)):62} {startup:7.3f} {'':10} {'':8} "
          f"{'':6} {'':12}  < {MARK_HELP * 1000:.0f} ms: {'met' if met else 'NOT met'}")
    load = os.getloadavg()
    print(f"all targets {'met' if ok_all else 'NOT all met'}; CPU s = user + system of the command and the "
          f"process it forks; load average at the end {load[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
