"""Live capture on nodes over SSH: one remote tcpdump per node, merged in time order.

Per node: one round trip checks that tcpdump is there (and whether sudo is needed) and finds the
capture interface (``NodeSpec.capture_interface``, else the one holding the node's advertise
address, else the one the SSH session came in on); then
``tcpdump -U --immediate-mode -B 8192 -i IFACE -s 128 -w - udp port PORT`` (under a small sh
watchdog, so it also stops when the SSH channel goes away) streams pcap bytes back over the pooled
connection (``--immediate-mode``: without it libpcap holds packets for its buffer timeout). The
bytes go through the incremental pcap parser and the fast decoder, are labelled with the node and
handed to a :class:`core.capture.merge.FrameMerger`.
Stopping kills every remote tcpdump by pid; a node whose stream ends on its own (tcpdump died, the
connection broke, or the node stopped answering while silent) gives a notice
"NODE: capture ended: REASON (retrying)" while the others go on, and is tried again with a backoff
(1 s, doubling up to 15 s) until its tcpdump listens again: then "NODE: capture resumed".
"""
from __future__ import annotations

import asyncio
import logging
import re
import shlex
import time
from dataclasses import dataclass, field

import asyncssh

from core.capture.merge import FrameMerger
from core.capture.stream import StreamDecoder
from core.errors import CaptureError, CommandTimeout, OverlayError
from core.model import NodeSpec
from core.nodes.address import literal_ip
from core.ssh import STREAM_STOP_WAIT, RemoteStream, SSHPool

log = logging.getLogger(__name__)
SNAPLEN = 128
BUFFER_KIB = 8192              # tcpdump -B: the kernel's capture buffer rides out a busy node's scheduling gaps
HEALTH_INTERVAL = 5.0          # seconds of silence after which a node is asked whether it still answers
HEALTH_TIMEOUT = 8.0           # ... and how long it has to answer
STOP_TIMEOUT = STREAM_STOP_WAIT + 3.0   # a kill that takes longer means the node is gone: close the channel instead
RESUME_BACKOFF = (1.0, 15.0)   # a node whose capture ended is tried again after 1 s, then 2, 4... at most 15 s
_SECTION = "--overlay-tui--"
_PROBE = ("PATH=$PATH:/usr/sbin:/sbin; p=$(command -v tcpdump) && [ -f \"$p\" ] && [ -x \"$p\" ] && echo \"$p\" "
          f"|| echo MISSING; echo {_SECTION}; id -u; echo {_SECTION}; "
          f"(sudo -n true 2>/dev/null && echo yes) || echo no; echo {_SECTION}; ip -o addr show; echo {_SECTION}; "
          "echo $SSH_CONNECTION")


# tcpdump under a small sh watchdog: `kill <sh pid>` stops tcpdump (TERM is passed on, so it flushes
# and prints its counters), and when the SSH channel goes away for any reason (client killed,
# connection lost) stdin reaches EOF and tcpdump is stopped too: no orphan waits for a next packet.
# The watchdog's own output goes to /dev/null so it never holds the channel open.
_WATCHDOG = (
    "exec 3<&0; {cmd} & t=$!; trap 'kill -TERM $t 2>/dev/null' TERM INT HUP; "
    "(cat <&3 >/dev/null 2>&1; kill -TERM $t 2>/dev/null) >/dev/null 2>&1 & w=$!; exec 3<&-; "
    "while :; do wait $t; s=$?; kill -0 $t 2>/dev/null || break; done; kill $w 2>/dev/null; "
    "if [ $s -gt 128 ]; then echo \"tcpdump was killed by SIG$(kill -l $((s - 128)))\" >&2; fi; exit $s")


# tcpdump's counters on exit: "3 packets captured", "1 packet received by filter", "0 packets dropped by kernel"
_STATS_LINE = re.compile(r"^\d+ packets? (captured|received by filter|dropped by \w+)")


def split_tcpdump_stderr(text: str) -> tuple[list[str], list[str]]:
    """tcpdump's stderr as (its exit counters, every other line: what went wrong)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return [ln for ln in lines if _STATS_LINE.match(ln)], [ln for ln in lines if not _STATS_LINE.match(ln)]


@dataclass
class CapturePlan:
    """How one node will be captured: the interface, the command, the addresses it holds."""

    node: str
    interface: str
    command: str                          # the tcpdump command line, as an operator would type it
    addresses: list[str] = field(default_factory=list)
    remote: str = ""                      # what really runs: tcpdump under the watchdog below


def tcpdump_command(iface: str, vxlan_port: int, snaplen: int = SNAPLEN, tcpdump: str = "tcpdump") -> str:
    """The capture command run on a node. ``iface`` is always quoted, so a plan's placeholder such as
    ``<underlay>`` prints as ``'<underlay>'``: itself a valid shell word, never a redirection."""
    return (f"{tcpdump} -U --immediate-mode -B {BUFFER_KIB} -i {shlex.quote(iface)} -s {int(snaplen)} -w - "
            f"udp port {int(vxlan_port)}")


def parse_probe(node: NodeSpec, out: str, vxlan_port: int, snaplen: int = SNAPLEN) -> CapturePlan:
    """Turn the probe's output into a :class:`CapturePlan`, or raise :class:`CaptureError`."""
    parts = (out.split(_SECTION) + [""] * 5)[:5]
    tcpdump, uid, sudo, addrs, ssh_conn = (p.strip() for p in parts)
    if not tcpdump or tcpdump.endswith("MISSING"):
        raise CaptureError(f"{node.name}: tcpdump is not installed there; install the package "
                           "`tcpdump` on that node (Debian/Ubuntu: apt-get install tcpdump)")
    prefix = ""
    if uid != "0":
        if sudo != "yes":
            raise CaptureError(f"{node.name}: capturing needs root and user {node.user or '(default)'} is "
                               "not root and has no passwordless sudo; connect as root or allow `sudo -n tcpdump`")
        prefix = "sudo -n "
    by_addr: dict[str, str] = {}
    for line in addrs.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("inet", "inet6"):
            by_addr[f[3].split("/")[0]] = f[1].split("@")[0]
    iface = node.capture_interface
    if iface is None:
        session = ssh_conn.split()[2] if len(ssh_conn.split()) >= 3 else None
        want = node.advertise or literal_ip(node.address) or session
        iface = by_addr.get(want or "")
        if iface is None:
            raise CaptureError(f"{node.name}: no interface there holds its underlay address {want or '?'}; "
                               "set capture_interface for that node in the inventory")
    cmd = tcpdump_command(iface, vxlan_port, snaplen, tcpdump)
    local = [a for a, i in by_addr.items() if i == iface]
    return CapturePlan(node.name, iface, cmd, local, f"{prefix}sh -c {shlex.quote(_WATCHDOG.format(cmd=cmd))}")


async def plan_capture(pool: SSHPool, node: NodeSpec, vxlan_port: int, snaplen: int = SNAPLEN) -> CapturePlan:
    """Check the node and build its capture command (one SSH round trip)."""
    res = await pool.run(node, _PROBE, timeout=node.command_timeout)
    return parse_probe(node, res.stdout, vxlan_port, snaplen)


class NodeCapture:
    """One node's remote tcpdump, read, decoded and fed to the merger."""

    def __init__(self, pool: SSHPool, node: NodeSpec, plan: CapturePlan, vxlan_port: int,
                 health: tuple[float, float] = (HEALTH_INTERVAL, HEALTH_TIMEOUT)) -> None:
        self.pool, self.node, self.plan, self.health = pool, node, plan, health
        self.decoder = StreamDecoder(node.name, vxlan_port)
        self.stream: RemoteStream | None = None
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.resumable = False          # its end pauses the source (the capture tries the node again)
        self.lost: str | None = None    # why the health check gave this node up
        self.last_data = time.monotonic()
        self.kernel_stats = ""          # tcpdump's closing lines (captured / received / dropped by kernel)

    async def start(self, timeout: float = 10.0) -> None:
        """Start tcpdump and wait until it says it is listening (so the capture is really on)."""
        self.stream = await self.pool.stream(self.node, self.plan.remote or self.plan.command)
        err = self.stream.process.stderr
        seen: list[str] = []
        try:
            while True:
                line = await asyncio.wait_for(err.readline(), timeout)
                text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
                if not text:
                    break
                seen.append(text.strip())
                if "listening on" in text:
                    return
        except TimeoutError:
            await self.stream.stop()
            raise CaptureError(f"{self.node.name}: tcpdump did not start listening within {timeout:g} s "
                               f"(`{self.plan.command}`)") from None
        except (OSError, asyncssh.Error) as e:
            raise CaptureError(f"{self.node.name}: tcpdump could not start: {e}") from None
        self.stream.process.close()
        why = seen[-1] if seen else "no error output"
        raise CaptureError(f"{self.node.name}: tcpdump could not start on {self.plan.interface}: {why}")

    def run(self, merger: FrameMerger) -> asyncio.Task:
        self.task = asyncio.create_task(self._read(merger), name=f"capture-{self.node.name}")
        return self.task

    async def _read(self, merger: FrameMerger) -> None:
        assert self.stream is not None
        reason = None
        health = asyncio.create_task(self._health(), name=f"capture-health-{self.node.name}")
        try:
            async for chunk in self.stream.chunks():
                self.last_data = time.monotonic()
                frames, bad = self.decoder.feed(chunk)
                merger.add(frames, bad, self.node.name)
            reason = await self._end_reason()
        except (OSError, asyncssh.Error) as e:
            reason = f"connection lost ({getattr(e, 'reason', None) or e})"
        except asyncio.CancelledError:
            if self.lost is None:
                raise
            reason = self.lost                 # cancelled by the health check: end this node only
        except Exception as e:  # one node's failure (even a bug) must not end the others' capture
            log.error("capture on %s failed", self.node.name, exc_info=e)
            reason = f"{e.__class__.__name__}: {e} (a bug: its traceback is in the log file)"
        finally:
            health.cancel()
            again = self.resumable and not self.stopping
            if reason is not None and not self.stopping:
                merger.notice(f"{self.node.name}: capture ended: {reason}" + (" (retrying)" if again else ""))
            if again:
                merger.source_paused(self.node.name)
            else:
                merger.source_ended(self.node.name)

    async def _health(self) -> None:
        """While the stream is silent, check every ``health[0]`` s that the node still answers.

        A node whose link or host goes down sends no EOF: without this, SSH keepalives would take
        most of a minute to notice. A node that does not answer within ``health[1]`` s ends
        this node's part of the capture.
        """
        assert self.stream is not None
        while True:
            await asyncio.sleep(self.health[0])
            if time.monotonic() - self.last_data < self.health[0]:
                continue
            try:
                await self.pool.run(self.node, f"kill -0 {self.stream.pid}", timeout=self.health[1])
            except OverlayError as e:
                why = "no answer" if isinstance(e, CommandTimeout) else e.message.removeprefix(self.node.name + ": ")
                self.lost = f"the node does not answer over SSH ({why} within {self.health[1]:g} s; link or host down?)"
                if self.task is not None:
                    self.task.cancel()
                return

    async def _end_reason(self) -> str:
        assert self.stream is not None
        text = await self.stream.stderr_text()
        stats, errors = split_tcpdump_stderr(text)
        self.kernel_stats = "; ".join(stats)
        proc = self.stream.process
        sig = proc.exit_signal[0] if proc.exit_signal else None
        if errors:
            return errors[-1]
        if sig:
            return f"tcpdump was killed by SIG{sig}"
        if proc.exit_status not in (None, 0):
            return f"tcpdump exited with status {proc.exit_status}"
        return "tcpdump stopped" + (f" ({self.kernel_stats})" if self.kernel_stats else "")

    async def stop(self, grace: float = 2.0) -> None:
        """Kill the remote tcpdump, let the reader take what was already sent, then end it."""
        self.stopping = True
        if self.stream is not None and self.lost is not None:
            self.stream.process.close()            # unreachable: closing the channel is all we can do
        elif self.stream is not None:
            try:
                await asyncio.wait_for(self.stream.stop(), STOP_TIMEOUT)
            except (TimeoutError, OverlayError, OSError, asyncssh.Error) as e:
                log.warning("%s: stopping tcpdump (pid %s) failed: %s; its channel is closed instead (the "
                            "watchdog stops tcpdump when its stdin ends)", self.node.name, self.stream.pid,
                            str(e) or type(e).__name__)
                self.stream.process.close()
        if self.task is not None and not self.task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.task), grace)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()


class LiveCapture:
    """Captures on several nodes at once; frames come out of :attr:`merger` in time order."""

    def __init__(self, pool: SSHPool, nodes: list[NodeSpec], vxlan_port: int = 4789, *,
                 snaplen: int = SNAPLEN, health: tuple[float, float] = (HEALTH_INTERVAL, HEALTH_TIMEOUT),
                 resume: tuple[float, float] | None = RESUME_BACKOFF, **merger_opts) -> None:
        self.pool, self.nodes, self.vxlan_port, self.snaplen = pool, nodes, vxlan_port, snaplen
        self.health, self.resume = health, resume
        self.merger = FrameMerger(len(nodes), **merger_opts)
        self.captures: list[NodeCapture] = []
        self.stopping = False
        self._keepers: list[asyncio.Task] = []
        self._pending: dict[int, NodeCapture] = {}     # node index -> a part being started again

    async def start(self) -> None:
        """Plan and start every node concurrently; on any failure stop those started and raise."""
        plans = await asyncio.gather(*(plan_capture(self.pool, n, self.vxlan_port, self.snaplen) for n in self.nodes),
                                     return_exceptions=True)
        self._raise_first(plans)
        self.captures = [NodeCapture(self.pool, n, p, self.vxlan_port, self.health)
                         for n, p in zip(self.nodes, plans) if isinstance(p, CapturePlan)]
        started = await asyncio.gather(*(c.start() for c in self.captures), return_exceptions=True)
        if any(isinstance(r, BaseException) for r in started):
            await asyncio.gather(*(c.stop() for c, r in zip(self.captures, started) if r is None),
                                 return_exceptions=True)
            self._raise_first(started)
        for c in self.captures:
            c.resumable = self.resume is not None
            c.run(self.merger)
        if self.resume is not None:
            self._keepers = [asyncio.create_task(self._keep(i), name=f"capture-keep-{c.node.name}")
                             for i, c in enumerate(self.captures)]

    async def _keep(self, i: int) -> None:
        """Whenever node ``i``'s part ends on its own, start it again (with a backoff) until it listens."""
        assert self.resume is not None
        first, most = self.resume
        while not self.stopping:
            c = self.captures[i]
            if c.task is not None:
                await asyncio.gather(c.task, return_exceptions=True)
            if c.lost is not None:
                self.pool.forget(c.node)     # its connection hung: try again on a fresh one, with its connect timeout
            delay = first
            while not self.stopping:
                await asyncio.sleep(delay)
                if self.stopping:
                    break
                try:
                    plan = await plan_capture(self.pool, c.node, self.vxlan_port, self.snaplen)
                    fresh = self._pending[i] = NodeCapture(self.pool, c.node, plan, self.vxlan_port, self.health)
                    await fresh.start()
                except (OverlayError, OSError, asyncssh.Error):
                    delay = min(delay * 2, most)
                    continue
                finally:
                    self._pending.pop(i, None)
                if self.stopping:
                    await fresh.stop()
                    break
                fresh.resumable = True
                self.captures[i] = fresh
                self.merger.source_resumed(c.node.name)
                self.merger.notice(f"{c.node.name}: capture resumed")
                fresh.run(self.merger)
                break

    @staticmethod
    def _raise_first(results: list) -> None:
        for r in results:
            if isinstance(r, OverlayError):
                raise r if isinstance(r, CaptureError) else CaptureError(str(r))
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def stop(self) -> None:
        """Stop every remote tcpdump (concurrently) and the resuming; safe to call twice."""
        self.stopping = True
        for k in self._keepers:
            k.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in self._pending.values()), return_exceptions=True)   # cut mid-start
        for c in self.captures:
            if c.resumable and c.task is not None and c.task.done() and not c.stopping:
                self.merger.source_ended(c.node.name)      # it was paused, waiting to resume: end it for good
        await asyncio.gather(*(c.stop() for c in self.captures), return_exceptions=True)

    @property
    def node_addresses(self) -> dict[str, str]:
        """Underlay addresses found on the nodes' capture interfaces -> node name."""
        return {a: c.node.name for c in self.captures for a in c.plan.addresses}
