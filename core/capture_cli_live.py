"""`overlay-tui capture --node NAME ...`: live frames from the nodes, one line (or JSON object) each.

Called from the ``_live`` hook of :mod:`core.cli_capture`. Notices (where the capture runs, a node
that dropped out, frames dropped by a slow consumer) go to stderr as ``# ...`` lines so stdout stays
one frame per line. ``--write FILE`` appends each batch to a pcap (buffered writes, flushed per
batch). Ctrl-C, ``--count`` and ``--seconds`` all end the capture the same way: every remote
tcpdump is killed, then a summary goes to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from contextlib import aclosing

from core.frame_format import frame_json, frame_line


def _say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


async def run_live(args: argparse.Namespace, formatter=None) -> int:
    """Capture on ``args.node`` until ``--count`` frames, ``--seconds`` or Ctrl-C; exit status."""
    from core.live_service import LiveService
    from core.pcap_io import PcapWriter

    service = LiveService.open(args.inventory, read_only=True)
    fmt = formatter or frame_line
    state = {"frames": 0, "dropped": 0}
    writer = None
    try:
        service.capture_nodes(args.node)                  # unknown node: UsageError, exit 2
        if args.write:
            writer = PcapWriter(args.write, snaplen=256)
        await _stream(service, args, fmt, writer, state)
    except asyncio.CancelledError:                        # Ctrl-C: a normal way to end a capture
        pass
    finally:
        if writer is not None:
            writer.close()
        await service.close()
    if state.get("closed"):                               # stdout's reader is gone: no flush error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    extra = f", {state['dropped']} dropped by a slow consumer" if state["dropped"] else ""
    wrote = f", written to {args.write}" if writer is not None else ""
    _say(f"{state['frames']} frames captured{extra}{wrote}")
    if state.get("ended"):
        _say("the capture ended on every node before --count/--seconds (see the notices above)")
        return 1
    return 0


async def _stream(service, args, fmt, writer, state: dict) -> None:
    out = sys.stdout
    limit = args.count or 0

    async def consume() -> None:
        async with aclosing(service.capture(args.node)) as batches:
            async for batch in batches:
                for note in batch.notices:
                    _say(note)
                if batch.dropped:
                    state["dropped"] += batch.dropped
                    _say(f"{batch.dropped} frames dropped (the output could not keep up)")
                frames = batch.frames
                if limit and state["frames"] + len(frames) > limit:
                    frames = frames[:limit - state["frames"]]
                lines = [json.dumps(frame_json(f)) for f in frames] if args.json else [fmt(f) for f in frames]
                if lines:
                    try:
                        out.write("\n".join(lines) + "\n")
                        out.flush()
                    except BrokenPipeError:               # `| head`: the reader is gone, stop quietly
                        state["closed"] = True
                        return
                if writer is not None and frames:
                    for f in frames:
                        writer.write_frame(f)
                    writer.flush()
                state["frames"] += len(frames)
                if limit and state["frames"] >= limit:
                    return
        state["ended"] = True                             # every node's capture ended on its own

    if args.seconds:
        try:
            await asyncio.wait_for(consume(), args.seconds)
        except asyncio.TimeoutError:
            pass
    else:
        await consume()
