"""Probe containers on the overlay, and the ping matrix between them.

The probe image is built here, once, from this machine's static busybox (the busybox-static
package: one statically linked binary, so the image needs no libc) as an in-memory rootfs tar
(``/bin/busybox`` plus applet symlinks), and loaded into each node's Docker through the same
SSH-forwarded socket with ``docker import``. Why not build it on the node from its own busybox:
a real host rarely has busybox-static installed (a dynamic busybox would fail in an empty rootfs),
and it needs no registry either way. The only condition is the same CPU architecture, which is
checked (a node of another architecture gets a clear error saying how to provide the image).

One probe per node: container and hostname ``probe-<node>``, on the overlay network, started
idempotently. ``ping_matrix`` runs ``ping -c 3 -W 1 -i 0.2`` from every probe to every other,
by name and by address (one exec per source probe, up to PING_SOURCES at once, whose pings run in
parallel inside it, so N nodes cost N SDK calls, not N*(N-1)*2), and parses busybox's summary lines.
"""
from __future__ import annotations

import asyncio
import io
import re
import struct
import tarfile

import docker.errors

from core.dockerd.clients import DockerNodes
from core.errors import DockerError, OverlayError, raise_gathered
from core.model import PingResult

LABEL = "overlay-tui.probe"                  # value: the network the probe was started on
# a probe holds nothing: SIGKILL stops it at once (``sleep`` as PID 1 ignores SIGTERM, so every dockerd restart
# waited Docker's 10 s stop timeout for it)
STOP_SIGNAL = "SIGKILL"
APPLETS = ("sh", "ping", "ip", "nc", "sleep", "wget", "hostname", "cat", "ls", "ifconfig", "nslookup", "arp", "ps")
PING = "ping -c 3 -W 1 -i 0.2"
# source probes pinging at once: 16 nodes at once are 480 pings whose first packets each wait for a dockerd to
# resolve the peer (the overlay's L2 miss); on a loaded host that took longer than ping's 1 s and lost them
PING_SOURCES = 4
# Inside a probe: ping every target ("$@") at once, then print each output under "=== target".
PING_ALL = (f'for t in "$@"; do {PING} "$t" > "/tmp/ping.$t" 2>&1 & done; wait; '
            'for t in "$@"; do echo "=== $t"; cat "/tmp/ping.$t"; rm -f "/tmp/ping.$t"; done')
ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "armv7l", 3: "i386", 243: "riscv64", 21: "ppc64le", 22: "s390x"}
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"min/avg/max = [\d.]+/([\d.]+)/")


def probe_name(node: str) -> str:
    return f"probe-{node}"


def static_elf_arch(data: bytes, path: str) -> str:
    """The architecture of a statically linked ELF executable; DockerError if it is not one."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise DockerError(f"{path} is not a 64-bit ELF executable; install busybox-static on this machine")
    endian = "<" if data[5] == 1 else ">"
    machine, = struct.unpack_from(endian + "H", data, 18)
    phoff, = struct.unpack_from(endian + "Q", data, 32)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == 3:                       # PT_INTERP: needs a dynamic loader and libc
            raise DockerError(f"{path} is dynamically linked and would not run in an empty image; "
                              "install busybox-static (`apt-get install busybox-static`)")
    return ELF_MACHINES.get(machine, f"elf-machine-{machine}")


def probe_rootfs_tar(busybox: bytes) -> bytes:
    """A rootfs with /bin/busybox and its applets as symlinks, as an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(busybox), 0o755
        tar.addfile(info, io.BytesIO(busybox))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def parse_ping(output: str) -> tuple[int, int, float | None, str | None]:
    """(sent, received, avg RTT ms, error) from busybox ping's output."""
    m = _SUMMARY.search(output)
    if not m:
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        return 0, 0, None, last
    rtt = _RTT.search(output)
    return int(m.group(1)), int(m.group(2)), float(rtt.group(1)) if rtt else None, None


class Probes:
    """Probe image, probe containers and the ping matrix on every node of an inventory."""

    def __init__(self, docker: DockerNodes, inventory, busybox_path: str = "/bin/busybox") -> None:
        self.docker, self.inventory, self.busybox_path = docker, inventory, busybox_path
        self._image_tar: tuple[bytes, str] | None = None

    @property
    def image(self) -> str:
        return self.inventory.cluster.probe_image

    def _tar(self) -> tuple[bytes, str]:
        if self._image_tar is None:
            try:
                with open(self.busybox_path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise DockerError(f"cannot read {self.busybox_path} to build the probe image ({e.strerror}); "
                                  "install busybox-static on this machine") from None
            self._image_tar = (probe_rootfs_tar(data), static_elf_arch(data, self.busybox_path))
        return self._image_tar

    async def ensure_image(self, node: str) -> bool:
        """Load the probe image into the node's Docker unless it is there; True if it was loaded."""
        def has_image(cl) -> tuple[bool, str]:
            try:
                cl.api.inspect_image(self.image)
                return True, ""
            except docker.errors.ImageNotFound:
                return False, cl.info().get("Architecture", "")
        present, arch = await self.docker.call(node, has_image)
        if present:
            return False
        tar, tar_arch = await asyncio.to_thread(self._tar)
        if arch and arch != tar_arch:
            raise DockerError(f"{node} runs {arch} but the probe image would be built from this machine's "
                              f"{tar_arch} busybox; load an image named {self.image} with busybox on that node "
                              f"(e.g. `docker pull busybox && docker tag busybox {self.image}`)")
        repo, _, tag = self.image.rpartition(":") if ":" in self.image.split("/")[-1] else (self.image, "", "latest")
        await self.docker.call(node, lambda cl: cl.api.import_image_from_data(
            tar, repository=repo, tag=tag, changes=['CMD ["sleep", "1000000"]']))
        return True

    async def start_one(self, node: str, network: str, again: bool = False) -> str:
        """Start probe-<node> on ``network`` unless it already runs there; "started" or "kept". ``again``: a
        running probe is removed and started anew ("started again")."""
        await self.ensure_image(node)
        name = probe_name(node)

        def run(cl) -> str:
            try:
                c = cl.api.inspect_container(name)
            except docker.errors.NotFound:
                c = None
            if c is not None:
                nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
                # kept only with an address on the network: one without cannot be pinged by address
                if (not again and c["State"].get("Running") and (nets.get(network) or {}).get("IPAddress")
                        and c["Config"].get("Image") == self.image and c["Config"].get("StopSignal") == STOP_SIGNAL):
                    return "kept"
                cl.api.remove_container(name, force=True)
            try:
                cl.containers.run(self.image, ["sleep", "1000000"], name=name, hostname=name, network=network,
                                  labels={LABEL: network}, stop_signal=STOP_SIGNAL, detach=True)
            except docker.errors.APIError as e:
                if "already exists in network" not in str(e):
                    raise
                # a node killed without a goodbye leaves its endpoint in the cluster store: Docker's own
                # way out is a forced disconnect of that name, then the probe starts again
                cl.api.remove_container(name, force=True)
                cl.api.disconnect_container_from_network(name, network, force=True)
                cl.containers.run(self.image, ["sleep", "1000000"], name=name, hostname=name, network=network,
                                  labels={LABEL: network}, stop_signal=STOP_SIGNAL, detach=True)
                return "started (its stale endpoint removed)"
            return "started again" if again and c is not None else "started"
        return await self.docker.call(node, run)

    async def start(self, network: str, attempts: int = 3, pause: float = 1.0,
                    again: frozenset[str] = frozenset()) -> dict[str, str]:
        """One probe per node on ``network``, concurrently; node -> "started"/"kept" ("started again" for the
        nodes in ``again``, whose running probe is replaced).

        Docker 20.10's classic store was seen refusing an endpoint just after the network was made
        ("failed to get network from store during join: network ... not found" on a node that lists it
        a moment later), so a node whose start Docker refused is tried again, ``attempts`` times in all.
        """
        nodes = [n.name for n in self.inventory.nodes]
        done: dict[str, str] = {}
        results: list[str | BaseException] = []
        for attempt in range(attempts):
            todo = [n for n in nodes if n not in done]
            results = await asyncio.gather(*(self.start_one(n, network, n in again) for n in todo),
                                           return_exceptions=True)
            done.update({n: r for n, r in zip(todo, results) if isinstance(r, str)})
            if len(done) == len(nodes) or attempt == attempts - 1:
                break
            await asyncio.sleep(pause)
        raise_gathered(results, DockerError)
        return {n: done[n] for n in nodes}

    async def remove(self, network: str | None = None) -> list[str]:
        """Remove the probe containers (of ``network``, or all) on every node; the names removed as name@node."""
        label = f"{LABEL}={network}" if network else LABEL

        def rm(cl) -> list[str]:
            out = []
            for c in cl.api.containers(all=True, filters={"label": label}):
                cl.api.remove_container(c["Id"], force=True)
                out.append((c.get("Names") or ["?"])[0].lstrip("/"))
            return out
        nodes = [n.name for n in self.inventory.nodes]
        results = await asyncio.gather(*(self.docker.call(n, rm) for n in nodes), return_exceptions=True)
        raise_gathered(results, DockerError)
        return [f"{c}@{n}" for n, cs in zip(nodes, results) for c in cs]  # type: ignore[union-attr]

    async def running(self) -> dict[str, tuple[str, str | None]]:
        """node -> (network, probe IP on it) for every node whose probe runs."""
        def look(cl, name: str):
            try:
                c = cl.api.inspect_container(name)
            except docker.errors.NotFound:
                return None
            if not c["State"].get("Running"):
                return None
            net = (c["Config"].get("Labels") or {}).get(LABEL, "")
            ip = ((c["NetworkSettings"].get("Networks") or {}).get(net) or {}).get("IPAddress") or None
            return net, ip
        nodes = [n.name for n in self.inventory.nodes]
        found = await asyncio.gather(*(self.docker.call(n, look, probe_name(n)) for n in nodes),
                                     return_exceptions=True)
        return {n: f for n, f in zip(nodes, found) if isinstance(f, tuple)}

    async def ping_from(self, src: str, targets: list[tuple[str, str, str]]) -> list[PingResult]:
        """Ping every (dst, target, by) from src's probe: one exec, the pings run concurrently inside it."""
        def run(cl) -> str:
            ex = cl.api.exec_create(probe_name(src), ["sh", "-c", PING_ALL, "sh", *[t for _, t, _ in targets]])
            return cl.api.exec_start(ex["Id"]).decode(errors="replace")
        try:
            outputs = split_outputs(await self.docker.call(src, run))
        except OverlayError as e:
            return [PingResult(src, dst, t, by, 0, 0, None, error=str(e)) for dst, t, by in targets]
        results = []
        for dst, target, by in targets:
            sent, received, rtt, error = parse_ping(outputs.get(target, ""))
            results.append(PingResult(src, dst, target, by, sent, received, rtt, error=error))
        return results

    async def ping_matrix(self) -> list[PingResult]:
        """Every ordered pair of nodes, by name and by address; [] when no probe runs anywhere."""
        probes = await self.running()
        if not probes:
            return []
        nodes = [n.name for n in self.inventory.nodes]
        per_src: dict[str, list[tuple[str, str, str]]] = {}
        missing = []
        for a in nodes:
            for b in nodes:
                if a == b:
                    continue
                if a not in probes or b not in probes:
                    gone = a if a not in probes else b
                    missing += [PingResult(a, b, probe_name(b), by, 0, 0, None, error=f"no probe runs on {gone}")
                                for by in ("name", "address")]
                    continue
                per_src.setdefault(a, []).append((b, probe_name(b), "name"))
                ip = probes[b][1]
                if ip:
                    per_src[a].append((b, ip, "address"))
                else:
                    missing.append(PingResult(a, b, "?", "address", 0, 0, None,
                                              error=f"probe on {b} has no address on {probes[b][0]}"))
        room = asyncio.Semaphore(PING_SOURCES)

        async def from_one(src: str, targets: list[tuple[str, str, str]]) -> list[PingResult]:
            async with room:
                return await self.ping_from(src, targets)

        batches = await asyncio.gather(*(from_one(a, ts) for a, ts in per_src.items()))
        return [r for batch in batches for r in batch] + missing


def split_outputs(text: str) -> dict[str, str]:
    """target -> its ping output, from PING_ALL's ``=== target`` sections."""
    parts = re.split(r"^=== (\S+)\n", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
