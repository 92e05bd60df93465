"""Active pair tests: is UDP 4789, UDP 7946 and TCP 7946 from each node let through into each other node?

Both ports are busy on a node whose overlay is up (the kernel's VXLAN socket holds UDP 4789, dockerd's
serf holds 7946), so no listener can be started there, and a datagram delivered to them would be parsed
by the kernel or by serf. Instead the receiver gets a short-lived nftables table of its own whose input
chain runs at priority 500, i.e. after every filter of the host (iptables' filter table, firewalld,
nft tables at the usual priority 0): a rule per (sender, port) matches the sender's underlay address,
a source port chosen for this run and the destination port, counts, and drops the packet, so it never
reaches the VXLAN socket or serf. A packet counted there went through the wire AND every firewall of
the receiver; a zero counter means something dropped it on the way (a security group, NSX, an iptables
rule on either end). The senders bind their underlay address and the chosen source ports, so nothing
leaves the inventory's addresses and the table matches nothing else. The table is removed when the
counters are read, and a detached ``sleep 60; nft delete table`` removes it even if the doctor dies.

The path MTU is measured with DF-set pings (``ping -M do``) of decreasing size from each node to each
other one's underlay address.
"""
from __future__ import annotations

import asyncio
import json
import random
import secrets
import shlex
from dataclasses import dataclass, field

from core.doctor import parse
from core.errors import OverlayError

PORTS = (("udp", 4789), ("udp", 7946), ("tcp", 7946))
SELF_DESTRUCT_SECONDS = 60

# Runs on the sender: argv[1] is a JSON list of [proto, src, sport, dst, dport]. UDP: three datagrams
# each; TCP: a non-blocking connect (the SYN is what the receiver counts; it is dropped, so no session
# ever reaches serf), closed after half a second.
SENDER = r"""
import json, socket, sys, time
jobs = json.loads(sys.argv[1])
held = []
for proto, src, sport, dst, dport in jobs:
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    try:
        s = socket.socket(fam, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, sport))
        if proto == "udp":
            for _ in range(3):
                s.sendto(b"overlay-tui doctor probe", (dst, dport))
            s.close()
        else:
            s.setblocking(False)
            s.connect_ex((dst, dport))
            held.append(s)
    except OSError as e:
        print("error", proto, dst, dport, e)
time.sleep(0.5)
for s in held:
    s.close()
print("sent", len(jobs))
"""


def label(src_node: str, proto: str, port: int) -> str:
    return f"{src_node} {proto}/{port}"


@dataclass
class PortProbe:
    """Counts per (sender, receiver, proto, port); ``errors`` says which node could not take part and why."""

    counts: dict[tuple[str, str, str, int], int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, list[str]] = field(default_factory=dict)   # receiver -> what its table showed
    unsent: set[tuple[str, str, str, int]] = field(default_factory=set)  # (sender, receiver ip, proto, port)


def nft_table(table: str, rules: list[tuple[str, str, str, int, int]]) -> str:
    """The receiver's counting table: (sender node, sender ip, proto, sport, dport) per rule."""
    lines = [f"table inet {table} {{", "  chain input {",
             "    type filter hook input priority 500; policy accept;"]
    for node, ip, proto, sport, dport in rules:
        fam = "ip6" if ":" in ip else "ip"
        lines.append(f'    {fam} saddr {ip} {proto} sport {sport} {proto} dport {dport} counter drop '
                     f'comment "{label(node, proto, dport)}"')
    lines += ["  }", "}", ""]
    return "\n".join(lines)


async def probe_ports(pool, ips: dict[str, str], pairs: list[tuple[str, str]], timeout: float = 8.0) -> PortProbe:
    """Send every port's test packets over every (sender, receiver) pair and read the receivers' counters."""
    result = PortProbe()
    table = f"overlay_tui_doctor_{secrets.token_hex(3)}"
    base = random.randrange(42000, 58000)
    ports: dict[tuple[str, str, str, int], int] = {}
    for i, (src, dst) in enumerate(pairs):
        for j, (proto, port) in enumerate(PORTS):
            ports[(src, dst, proto, port)] = base + i * len(PORTS) + j
    receivers = sorted({d for _, d in pairs})
    senders = sorted({s for s, _ in pairs})

    async def install(dst: str) -> None:
        rules = [(s, ips[s], proto, sp, port) for (s, d, proto, port), sp in ports.items() if d == dst]
        cleanup = shlex.quote(f"sleep {SELF_DESTRUCT_SECONDS}; nft delete table inet {table} 2>/dev/null")
        cmd = (f"nft -f - || exit 1; nohup setsid sh -c {cleanup} > /dev/null 2>&1 < /dev/null & echo installed")
        res = await pool.run(dst, cmd, input=nft_table(table, rules), timeout=timeout)
        if not res.ok:
            raise OverlayError(f"`nft -f -` failed: {(res.stderr or res.stdout).strip()[:200]}")

    installed = await asyncio.gather(*(install(d) for d in receivers), return_exceptions=True)
    ready = set()
    for dst, res in zip(receivers, installed):
        if isinstance(res, BaseException):
            result.errors[dst] = f"cannot count on {dst}: {res}"
        else:
            ready.add(dst)

    async def send(src: str) -> None:
        jobs = [[proto, ips[src], sp, ips[d], port] for (s, d, proto, port), sp in ports.items()
                if s == src and d in ready]
        if not jobs:
            return
        res = await pool.run(src, f"python3 -c {shlex.quote(SENDER)} {shlex.quote(json.dumps(jobs))}",
                             timeout=timeout)
        if not res.ok:
            raise OverlayError(f"the sender (python3) failed: {(res.stderr or res.stdout).strip()[-200:]}")
        for line in res.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["error"] and len(parts) >= 4 and parts[3].isdigit():
                # the sender could not send this one (e.g. its source port was taken): not a drop
                result.unsent.add((src, parts[2], parts[1], int(parts[3])))
                result.errors[f"{src}->{parts[2]}"] = f"{src}: could not send {parts[1]}/{parts[3]} to {parts[2]}: {line}"

    sent = await asyncio.gather(*(send(s) for s in senders), return_exceptions=True)
    for src, res in zip(senders, sent):
        if isinstance(res, BaseException):
            result.errors[src] = f"cannot send from {src}: {res}"

    async def read(dst: str) -> str:
        res = await pool.run(dst, f"nft list table inet {table}; nft delete table inet {table}", timeout=timeout)
        return res.stdout

    listed = await asyncio.gather(*(read(d) for d in sorted(ready)), return_exceptions=True)
    for dst, text in zip(sorted(ready), listed):
        if isinstance(text, BaseException):
            result.errors[dst] = f"cannot read the counters on {dst}: {text}"
            continue
        counters = parse.nft_counters(text)
        result.evidence[dst] = [f"{dst}: nft list table inet {table} -> {ln.strip()}" for ln in text.splitlines()
                                if "counter" in ln]
        for (s, d, proto, port) in ports:
            if d == dst and s not in result.errors and (s, ips[d], proto, port) not in result.unsent:
                result.counts[(s, d, proto, port)] = counters.get(label(s, proto, port), 0)
    return result


async def probe_pmtu(pool, ips: dict[str, str], pairs: list[tuple[str, str]], timeout: float = 20.0) \
        -> tuple[dict[tuple[str, str], int | None | str], dict[str, str], dict[str, str]]:
    """(pair -> largest DF ping payload that passed / None / "down", node -> error, node -> command run)."""
    by_src: dict[str, list[str]] = {}
    for s, d in pairs:
        by_src.setdefault(s, []).append(d)
    out: dict[tuple[str, str], int | None | str] = {}
    errors: dict[str, str] = {}
    commands: dict[str, str] = {}

    async def one(src: str) -> None:
        dsts = by_src[src]
        cmd = parse.pmtu_script(ips[src], [ips[d] for d in dsts])
        commands[src] = f"ping -M do -s SIZE -I {ips[src]} DST (SIZE {parse.PMTU_SIZES[0]} down to {parse.PMTU_SIZES[-1]})"
        res = await pool.run(src, cmd, timeout=timeout)
        got = parse.parse_pmtu(res.stdout)
        for d in dsts:
            out[(src, d)] = got.get(ips[d], "down")

    done = await asyncio.gather(*(one(s) for s in by_src), return_exceptions=True)
    for src, res in zip(by_src, done):
        if isinstance(res, BaseException):
            errors[src] = str(res)
    return out, errors, commands
