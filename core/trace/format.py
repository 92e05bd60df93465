"""A traced ping as text lines (CLI and console)."""
from __future__ import annotations

from core.model import TraceResult


def trace_lines(res: TraceResult) -> list[str]:
    """Per echo: each step with its time after the first sighting (ms), then the verdicts."""
    out = [f"trace {res.src} ({res.src_ip} on {res.src_node}) → {res.dst} ({res.dst_ip} on {res.dst_node or '?'})"]
    seqs = sorted({h.seq for h in res.hops})
    for seq in seqs:
        hops = [h for h in res.hops if h.seq == seq]
        t0 = next((h.ts for h in hops if h.ts is not None), None)
        out.append(f"echo {seq}:")
        for h in hops:
            when = "not seen" if h.ts is None else f"+{(h.ts - (t0 or h.ts)) * 1000:8.3f} ms"
            out.append(f"  {h.step}. {h.point:<44} {when}")
    out += res.verdicts
    out += [f"not watched: {u}" for u in res.unobservable]
    if not res.hops and res.ping_output:
        out.append(res.ping_output.strip())
    return out
