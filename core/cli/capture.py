"""`overlay-tui capture`: decoded VXLAN frames (or per-flow counters) from a pcap file or live nodes.

- ``capture --read FILE [--json] [--flows] [--count K] [--write OUT]`` needs no inventory.
- ``capture --node NAME [--node NAME ...] [--count K] [--seconds S] [--json] [--write FILE]`` captures
  live over SSH: see the hook :func:`_live` (filled in by the live-capture work).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

from core.capture.decode import DEFAULT_VXLAN_PORT
from core.capture.format import flow_table_lines, frame_json, frame_line
from core.errors import OverlayError, UsageError
from core.model import Frame, Names


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "capture", help="show decoded VXLAN frames from a pcap file or live nodes",
        description="Decode VXLAN frames (outer and inner addresses, VNI, protocol) from a pcap file "
                    "(--read) or live from nodes over SSH (--node); --flows sums them per flow.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--read", "-r", metavar="FILE", help="decode a classic pcap file (no inventory needed)")
    src.add_argument("--node", "-n", metavar="NAME", action="append", help="capture live on this node (repeatable)")
    p.add_argument("--count", "-c", metavar="K", type=int, help="stop after K frames")
    p.add_argument("--seconds", "-s", metavar="S", type=float, help="live: stop after S seconds")
    p.add_argument("--write", "-w", metavar="FILE",
                   help="also write the frames to this new pcap file (mode 0600; never through a symlink)")
    p.add_argument("--replace", action="store_true",
                   help="with --write: replace FILE if it exists (atomically, when the capture ends)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--flows", action="store_true", help="print per-flow counters instead of frames")
    p.add_argument("--names", action="store_true",
                   help="--read: name VNIs, containers and nodes from the live cluster (needs an inventory)")
    p.add_argument("--vxlan-port", metavar="PORT", type=int, default=None,
                   help=f"UDP port of VXLAN (default: the inventory's, else {DEFAULT_VXLAN_PORT}; Linux's own is 8472)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry of the subcommand: validate, then read a file or capture live."""
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError("--seconds must be more than 0")
    if args.vxlan_port is not None and not 0 < args.vxlan_port < 65536:
        raise UsageError(f"--vxlan-port {args.vxlan_port} is not a UDP port (1-65535)")
    if args.read:
        if args.seconds is not None:
            raise UsageError("--seconds applies to live capture (--node), not to --read")
        names = None
        if getattr(args, "names", False):
            from core.cli.run import run_async
            got: list[Names] = []
            rc = run_async(_cluster_names(args, got))
            if rc:
                return rc
            names = got[0]
        rc = _guard_pipe(lambda: read_file(args, sys.stdout, sys.stderr, names))
        from core.cli import quick_exit
        quick_exit.allow()                 # everything is written and closed: the process may end at once
        return rc
    if args.node:
        from core.cli.run import run_async
        return run_async(_live(args))
    raise UsageError("capture needs --read FILE or --node NAME")


async def _live(args: argparse.Namespace) -> int:
    from core.cli.capture_live import run_live
    return await run_live(args)


NAMES_TIMEOUT = 30.0


async def _cluster_names(args: argparse.Namespace, out: list[Names]) -> int:
    """The live cluster's names (as a live capture applies them), appended to ``out``. The file is
    read even when they cannot be had: a warning says so and raw values are shown."""
    import asyncio  # only for --names

    from core.live import LiveService, resolve_inventory
    service = LiveService(resolve_inventory(getattr(args, "inventory", None)), read_only=True)
    try:
        out.append(await asyncio.wait_for(service.names(), NAMES_TIMEOUT))
    except TimeoutError:
        sys.stderr.write(f"warning: names unavailable (raw values shown): no answer within {NAMES_TIMEOUT:g} s\n")
        out.append(Names())
    except (OverlayError, OSError) as e:
        sys.stderr.write(f"warning: names unavailable (raw values shown): {e}\n")
        out.append(Names())
    finally:
        await service.close()
    return 0


def read_file(args: argparse.Namespace, out, err, names: Names | None = None) -> int:
    """``capture --read``: frames (or flows) of a capture file to ``out``; counts and notices to ``err``."""
    from core.capture.decode import VxlanDecoder
    from core.capture.flowagg import FlowCounter  # numpy: imported only when a file is read
    port = args.vxlan_port or DEFAULT_VXLAN_PORT
    decoder = VxlanDecoder(port)
    table = FlowCounter()
    if args.flows and not args.write and args.count is None:
        from core.capture.batch import flows_from_pcap
        table, truncated = flows_from_pcap(args.read, port, decoder=decoder)
    elif args.json and not args.flows and not args.write:
        from core.capture.lines import write_file_json
        truncated = write_file_json(args.read, port, decoder, table, out, names, args.count)
    else:
        frames = _FileFrames(args.read, decoder, args.count)
        pending: list[Frame] = []
        for f in _written(frames, args.write, args.replace):
            pending.append(f)
            if len(pending) >= 4096:
                table.add_frames(pending)
                pending.clear()
            if not args.flows:
                out.write((json.dumps(frame_json(f, names)) if args.json else frame_line(f, names)) + "\n")
        table.add_frames(pending)
        truncated = frames.truncated
    if args.flows and args.json:
        out.writelines(table.columns().json_lines(names))
    elif args.flows:
        out.writelines(line + "\n" for line in flow_table_lines(table.flows(names)))
    c = table.counts()
    err.write(f"{args.read}: {c['frames']} frames, {c['flows']} flows, {c['malformed']} malformed, "
              f"{c['not_vxlan']} not VXLAN (port {port})\n")
    for note in (truncated, decoder.port_hint()):
        if note:
            err.write(f"warning: {note}\n")
    return 0


class _FileFrames:
    """Iterator over a file's decoded frames that remembers a truncated end (``truncated``)."""

    def __init__(self, path: str, decoder, count: int | None) -> None:
        from core.capture.pcap import PcapFileReader
        self.reader, self.decoder, self.count = PcapFileReader(path), decoder, count

    @property
    def truncated(self) -> str | None:
        return self.reader.truncated

    def __iter__(self) -> Iterator[Frame]:
        decode = self.decoder.decode
        for n, (ts, _cap, wirelen, data) in enumerate(self.reader, 1):
            yield decode(data, ts, wirelen)
            if self.count is not None and n >= self.count:
                return


def _written(frames, path: str | None, replace: bool = False) -> Iterator[Frame]:
    if not path:
        yield from frames
        return
    from core.capture.pcap import open_writer
    with open_writer(path, replace=replace) as w:
        for f in frames:
            w.write_frame(f)
            yield f


def _guard_pipe(fn) -> int:
    """Run ``fn``; a closed stdout (``| head``) ends quietly instead of with a traceback."""
    try:
        rc = fn()
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
