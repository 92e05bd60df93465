"""Pure functions that read the output of commands run on the nodes, and judge it.

Nothing here runs anything: each function takes text (or numbers) as a node printed it and returns
plain values, so every judgement is unit-tested on recorded output (tests/test_doctor_parse.py),
including the faults the lab cannot plant (clock skew, vmxnet3, ESP, full disks, quotas, versions).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime

VXLAN_OVERHEAD = 50          # outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8
OVERLAY_MTU = 1450           # what Docker gives containers on an overlay network
UNDERLAY_MTU = OVERLAY_MTU + VXLAN_OVERHEAD
ICMP_IP_HEADERS = 28         # ping -s SIZE sends SIZE + 28 bytes of IP packet
DEFAULT_QUOTA = 2 * 1024 ** 3   # etcd's --quota-backend-bytes default


def sections(text: str) -> dict[str, list[str]]:
    """Split ``@@name`` delimited output (the facts script's) into name -> lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@") and len(line) > 2 and " " not in line:
            current = out.setdefault(line[2:], [])
        elif current is not None:
            current.append(line)
    return out


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


# --- versions ---------------------------------------------------------------------------------------
def docker_verdict(version: str | None) -> tuple[str, str, str]:
    """(status, summary, fix) for a dockerd version and Docker's classic ``--cluster-store``."""
    v = version_tuple(version)
    if v is None:
        return "warn", "Docker's version is unknown (the daemon did not answer)", "start dockerd on the node"
    if v[:2] <= (20, 10):
        return "ok", f"Docker {version} has the classic --cluster-store", ""
    return ("fail", f"Docker {version} has no --cluster-store (removed in 23.0): this host needs swarm mode's "
            "overlay, or Docker 20.10",
            "install Docker 20.10 (e.g. Debian 12's docker.io 20.10.24) for the etcd store, or use swarm mode: "
            "`docker swarm init --advertise-addr IP` on one node, `docker swarm join` on the others")


def etcd_version(text: str) -> str | None:
    m = re.search(r"etcd Version:\s*(\S+)", text)
    return m.group(1) if m else None


def etcd_flags(argv: list[str], env: list[str] | None = None) -> dict[str, str]:
    """A running etcd's flags from /proc/PID/cmdline (one argument a line) and its ETCD_* environment.

    ``--flag=value``, ``--flag value`` and bare ``--flag`` (= "true") are read; a flag given on the
    command line wins over the environment, as in etcd.
    """
    flags: dict[str, str] = {}
    for line in env or []:
        key, sep, value = line.partition("=")
        if sep and key.startswith("ETCD_"):
            flags[key[5:].lower().replace("_", "-")] = value
    i = 0
    args = [a for a in argv if a]
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            name, sep, value = a.lstrip("-").partition("=")
            if not sep:
                if i + 1 < len(args) and not args[i + 1].startswith("-"):
                    value, i = args[i + 1], i + 1
                else:
                    value = "true"
            flags[name] = value
        i += 1
    return flags


def etcd_v2_verdict(version: str | None, flags: dict[str, str]) -> tuple[str, str, str]:
    """Docker's classic store speaks etcd's v2 API only: 3.4/3.5 need --enable-v2, 3.6 has no v2."""
    v = version_tuple(version)
    enabled = flags.get("enable-v2", "").lower()
    if v is not None and v[:2] >= (3, 6):
        return ("fail", f"etcd {version} has no v2 API (removed in 3.6); Docker's classic store cannot use it",
                "run etcd 3.5 or 3.4 (Debian 12's etcd-server 3.4.23) with --enable-v2=true")
    default_on = v is not None and v[:2] <= (3, 3)
    if enabled in ("true", "1") or (not enabled and default_on):
        return "ok", f"etcd {version or '?'} serves the v2 API (--enable-v2={enabled or 'default'})", ""
    return ("fail", f"etcd {version or '?'} runs without --enable-v2=true: Docker's classic store cannot read or write",
            "restart etcd with --enable-v2=true (keep its other flags and data dir)")


PYTHON_PACKAGES = ("etcd3", "protobuf", "docker", "asyncssh", "textual")


def python_verdict(versions: dict[str, str | None], pure_python_protobuf: bool) -> tuple[str, list[str], str]:
    """(status, problems, fix) for the console's own packages; ``None`` = not installed."""
    problems, fixes = [], []
    for pkg in PYTHON_PACKAGES:
        if versions.get(pkg) is None:
            problems.append(f"{pkg} is not installed")
    pb = version_tuple(versions.get("protobuf"))
    if pb is not None and pb[0] >= 4 and not pure_python_protobuf:
        problems.append(f"protobuf {versions['protobuf']} with etcd3 0.12 fails ('Descriptors cannot be created "
                        "directly') unless PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
        fixes.append("pip install 'protobuf>=3.20,<4' or export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
    docker_sdk = version_tuple(versions.get("docker"))
    if docker_sdk is not None and docker_sdk[0] < 5:
        problems.append(f"docker SDK {versions['docker']} is older than 5.0")
        fixes.append("pip install 'docker>=7'")
    if any(versions.get(p) is None for p in PYTHON_PACKAGES):
        fixes.append("pip install -e . (the project's dependencies, pyproject.toml)")
    return ("fail" if problems else "ok"), problems, "; ".join(fixes)


# --- hostnames ---------------------------------------------------------------------------------------
def duplicate_hostnames(hostnames: dict[str, str]) -> dict[str, list[str]]:
    """hostname -> the nodes sharing it (only hostnames held by two or more nodes)."""
    groups: dict[str, list[str]] = {}
    for node, host in hostnames.items():
        if host:
            groups.setdefault(host.strip(), []).append(node)
    return {h: nodes for h, nodes in groups.items() if len(nodes) > 1}


# --- interfaces and MTU ------------------------------------------------------------------------------
def interface_of(addr_lines: list[str], ip: str) -> str | None:
    """The interface holding ``ip``, from ``ip -o addr show`` lines."""
    for line in addr_lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6") and parts[3].split("/")[0] == ip:
            return parts[1].split("@")[0]
    return None


def link_mtu(link_lines: list[str], iface: str) -> int | None:
    """The MTU of ``iface`` from ``ip -o link show`` lines."""
    for line in link_lines:
        m = re.match(r"\d+:\s+([^:@\s]+)(?:@\S+)?:\s.*\bmtu (\d+)", line)
        if m and m.group(1) == iface:
            return int(m.group(2))
    return None


def mtu_verdict(mtu: int | None, iface: str) -> tuple[str, str, str]:
    if mtu is None:
        return "warn", f"the MTU of {iface} is unknown", ""
    if mtu >= UNDERLAY_MTU:
        return "ok", f"{iface} mtu {mtu} carries 1450-byte overlay frames (+{VXLAN_OVERHEAD} bytes of VXLAN)", ""
    inner = mtu - VXLAN_OVERHEAD
    return ("fail", f"{iface} mtu {mtu} is under {UNDERLAY_MTU}: 1450-byte overlay frames plus {VXLAN_OVERHEAD} bytes "
            "of VXLAN do not fit, so large packets between containers vanish",
            f"`ip link set dev {iface} mtu {UNDERLAY_MTU}` (and on the path), or give the overlay a smaller MTU: "
            f"`docker network create -d overlay --opt com.docker.network.driver.mtu={inner} NAME`")


PMTU_SIZES = (1472, 1422, 1400, 1372, 1322, 1272, 1172, 972)   # + 28 = 1500, 1450, 1428, 1400, ...


def pmtu_script(src: str, dsts: list[str]) -> str:
    """Per destination (all at once, then ``wait``): a plain ping, then DF-set pings of decreasing size;
    prints ``DST SIZE`` (the largest that passed), ``DST none`` or ``DST down`` (not even a plain ping)."""
    from shlex import quote

    sizes = " ".join(str(s) for s in PMTU_SIZES)
    lines = []
    for dst in dsts:
        d, s = quote(dst), quote(src)
        lines.append(
            f"( if ping -n -c 1 -W 1 -I {s} {d} >/dev/null 2>&1; then r=none; for sz in {sizes}; do "
            f"if ping -n -M do -c 1 -W 1 -I {s} -s $sz {d} >/dev/null 2>&1; then r=$sz; break; fi; done; "
            f"echo {d} $r; else echo {d} down; fi ) &")
    return " ".join(lines) + " wait" if lines else "true"


def parse_pmtu(text: str) -> dict[str, int | None | str]:
    """dst -> largest ICMP payload that passed with DF set (None: none did; "down": no plain ping either)."""
    out: dict[str, int | None | str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = "down" if parts[1] == "down" else (None if parts[1] == "none" else int(parts[1]))
    return out


# --- kernel modules -------------------------------------------------------------------------------
MODULES_SCRIPT = ("for m in vxlan esp4 xfrm_user; do if [ -d /sys/module/$m ]; then echo \"$m loaded\"; "
                  "elif modprobe -n $m >/dev/null 2>&1; then echo \"$m available\"; else echo \"$m missing\"; fi; done")


def modules(lines: list[str]) -> dict[str, str]:
    """module -> "loaded" / "available" / "missing" from :data:`MODULES_SCRIPT`'s output."""
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("loaded", "available", "missing"):
            out[parts[0]] = parts[1]
    return out


# --- clock ------------------------------------------------------------------------------------------
def clock_offset(t_sent: float, remote: str, t_back: float) -> tuple[float, float]:
    """(offset of the remote clock against ours, its uncertainty): remote - midpoint of the round trip."""
    return float(remote.strip()) - (t_sent + t_back) / 2, (t_back - t_sent) / 2


def skew_verdict(offsets: dict[str, tuple[float, float]], warn: float = 0.5, fail: float = 1.0) \
        -> tuple[str, float, list[str]]:
    """(status, spread in seconds, [the nodes furthest apart]); etcd warns from 1 s of skew between members."""
    if len(offsets) < 2:
        return "ok", 0.0, []
    lo = min(offsets, key=lambda n: offsets[n][0])
    hi = max(offsets, key=lambda n: offsets[n][0])
    spread = offsets[hi][0] - offsets[lo][0]
    uncertainty = offsets[hi][1] + offsets[lo][1]
    status = "fail" if spread - uncertainty > fail else "warn" if spread - uncertainty > warn else "ok"
    return status, spread, [lo, hi]


# --- etcd ---------------------------------------------------------------------------------------------
def member_count_verdict(n: int) -> tuple[str, str]:
    if n == 0:
        return "fail", "no etcd member is listed"
    if n == 1:
        return "warn", "1 etcd member: no fault tolerance (losing it stops every network change)"
    if n == 2:
        return "warn", "2 etcd members: no fault tolerance (quorum is 2, so losing either stops the store)"
    if n > 7:
        return "warn", f"{n} etcd members: more than 7 slows every write for no gain (etcd recommends 3, 5 or 7)"
    if n % 2 == 0:
        return "warn", (f"{n} etcd members: an even count tolerates no more failures than {n - 1} "
                        f"(quorum {n // 2 + 1}) and adds a voter to every write")
    return "ok", f"{n} etcd members: quorum {n // 2 + 1}, tolerates {(n - 1) // 2} failure(s)"


def parse_size(text: str | None) -> int | None:
    """etcd's --quota-backend-bytes value (bytes, plain integer)."""
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def quota_verdict(db_size: int, quota: int) -> tuple[str, str]:
    used = db_size / quota if quota > 0 else 0.0
    text = f"db {db_size / 1024 ** 2:.1f} MiB of its {quota / 1024 ** 2:.0f} MiB quota ({used:.0%})"
    if used >= 0.95:
        return "fail", text + ": at the quota etcd raises NOSPACE and refuses every write"
    if used >= 0.8:
        return "warn", text + ": close to the quota (NOSPACE alarm at 100%)"
    return "ok", text


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled Prometheus metric in etcd's /metrics text."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


@dataclass
class DiskUse:
    mount: str
    used_pct: int
    avail_kb: int


def parse_df(text: str) -> DiskUse | None:
    """``df -P PATH``'s data line."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6 and parts[4].endswith("%"):
            try:
                return DiskUse(mount=parts[5], used_pct=int(parts[4][:-1]), avail_kb=int(parts[3]))
            except ValueError:
                return None
    return None


def disk_verdict(use: DiskUse) -> str:
    if use.used_pct >= 95 or use.avail_kb < 100 * 1024:
        return "fail"
    if use.used_pct >= 85:
        return "warn"
    return "ok"


FATAL_RE = re.compile(r'"level":"(fatal|panic)"| C \| |level=fatal|^panic:|\bpanic: ')


def last_fatal(lines: list[str]) -> str | None:
    """The last fatal/critical/panic line of an etcd log (capnslog ` C | `, zap level fatal/panic)."""
    found = [ln for ln in lines if FATAL_RE.search(ln)]
    return found[-1].strip() if found else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_urls(urls: str) -> list[str]:
    """The http:// (not https) URLs of a comma-separated list that listen beyond loopback."""
    out = []
    for url in (u.strip() for u in urls.split(",")):
        m = re.match(r"http://(\[[^\]]+\]|[^:/]+)", url)
        if m and not _is_loopback(m.group(1)):
            out.append(url)
    return out


# --- Docker's TCP socket --------------------------------------------------------------------------
def tcp_listeners(ss_lines: list[str], ports: tuple[int, ...]) -> list[str]:
    """Local addresses (``addr:port``) of ``ss -ltnH`` listeners on ``ports``, loopback excluded."""
    out = []
    for line in ss_lines:
        parts = line.split()
        if len(parts) < 4 or parts[0] != "LISTEN":
            continue
        local = parts[3]
        host, _, port = local.rpartition(":")
        if port.isdigit() and int(port) in ports and not _is_loopback(host.split("%")[0]):
            out.append(local)
    return out


def docker_tls(argv: list[str]) -> bool:
    """dockerd's command line has --tlsverify (clients must present a certificate)."""
    return any(a == "--tlsverify" or a.startswith("--tlsverify=true") for a in argv)


# --- FORWARD policy ---------------------------------------------------------------------------------
def forward_blocked_bridges(rules: list[str], bridges: list[str]) -> tuple[str | None, list[str]]:
    """(FORWARD policy, bridges whose traffic no FORWARD rule accepts while the policy drops)."""
    policy = next((ln.split()[2] for ln in rules if ln.startswith("-P FORWARD ") and len(ln.split()) >= 3), None)
    if policy != "DROP":
        return policy, []
    blocked = []
    for br in bridges:
        accepted = any(re.search(rf"(-i|-o) {re.escape(br)}\b.*-j (ACCEPT|DOCKER)\b", ln) for ln in rules)
        if not accepted:
            blocked.append(br)
    return policy, blocked


def bridges(link_lines: list[str]) -> list[str]:
    """Bridge names from ``ip -o link show type bridge``."""
    out = []
    for line in link_lines:
        m = re.match(r"\d+:\s+([^:@\s]+)", line)
        if m:
            out.append(m.group(1))
    return out


# --- NIC offload ------------------------------------------------------------------------------------
def offload_on(ethtool_k: str) -> list[str]:
    """The checksum features of ``ethtool -k IF`` that are on and hurt VXLAN on vmxnet3 (moby#41775)."""
    risky = ("tx-checksum-ip-generic", "tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation",
             "tx-checksumming")
    out = []
    for line in ethtool_k.splitlines():
        name, _, value = line.strip().partition(":")
        if name in risky and value.strip().startswith("on"):
            out.append(name)
    return out


# --- gossip (serf) -----------------------------------------------------------------------------------
SERF_RE = re.compile(r'time="([^"]+)".*serf: (EventMemberJoin|EventMemberLeave|EventMemberFailed|EventMemberReap|'
                     r'EventMemberUpdate): (\S+) (\S+)')


@dataclass
class SerfPeer:
    name: str
    address: str
    event: str          # the last one seen: EventMemberJoin, EventMemberLeave, EventMemberFailed, ...
    at: datetime


def log_time(stamp: str) -> datetime | None:
    """A dockerd log timestamp (RFC 3339 with nanoseconds) as an aware UTC datetime."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", stamp.strip())
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = m.group(3) or "Z"
    try:
        return datetime.fromisoformat(m.group(1) + frac + ("+00:00" if tz == "Z" else tz)).astimezone(UTC)
    except ValueError:
        return None


def serf_peers(lines: list[str]) -> dict[str, SerfPeer]:
    """address -> the last serf membership event dockerd logged for it."""
    out: dict[str, SerfPeer] = {}
    for line in lines:
        m = SERF_RE.search(line)
        if not m:
            continue
        stamp, event, name, addr = m.groups()
        at = log_time(stamp)
        if at is None:
            continue
        addr = addr.replace("\\n", "").rstrip('"\\')
        out[addr] = SerfPeer(name.strip(), addr, event, at.astimezone(UTC))
    return out


# --- the active port test ---------------------------------------------------------------------------
NFT_COUNTER_RE = re.compile(r'counter packets (\d+) bytes \d+.*comment "([^"]+)"')


def nft_counters(text: str) -> dict[str, int]:
    """comment -> packets counted, from ``nft list table``."""
    return {m.group(2): int(m.group(1)) for m in NFT_COUNTER_RE.finditer(text)}
