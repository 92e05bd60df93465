"""`overlay-tui capture --node NAME ...`: live frames from the nodes, one line (or JSON object) each.

Called from the ``_live`` hook of :mod:`core.cli.capture`. Notices (where the capture runs, a node
that dropped out, frames dropped by a slow consumer) go to stderr as ``# ...`` lines so stdout stays
one frame per line. ``--write FILE`` appends each batch to a pcap (buffered writes, flushed per
batch); ``--flows`` prints the per-flow table at the end instead of frames. Ctrl-C, ``--count``
and ``--seconds`` all end the capture the same way: every remote tcpdump is killed, then a summary
goes to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from contextlib import aclosing
from dataclasses import replace

from core.capture.flows import FlowTable
from core.capture.format import flow_json, flow_table_lines, frame_json, frame_line
from core.capture.names import learn_names
from core.model import Names


def _say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


async def run_live(args: argparse.Namespace, formatter=None) -> int:
    """Capture on ``args.node`` until ``--count`` frames, ``--seconds`` or Ctrl-C; exit status."""
    from core.capture.pcap import open_writer
    from core.live import LiveService, resolve_inventory

    inv = resolve_inventory(args.inventory)
    if args.vxlan_port:
        inv = replace(inv, cluster=replace(inv.cluster, vxlan_port=args.vxlan_port))
    service = LiveService(inv, read_only=True)
    fmt = formatter or frame_line
    table = FlowTable() if args.flows else None
    state: dict = {"frames": 0, "dropped": 0, "names": Names()}
    writer = None
    _stop_on_signals(asyncio.current_task())
    try:
        service.capture_nodes(args.node)                  # unknown node: UsageError, exit 2
        if args.write:
            writer = open_writer(args.write, snaplen=256, replace=args.replace)
        await _stream(service, args, fmt, writer, state, table)
    except asyncio.CancelledError:                        # Ctrl-C: a normal way to end a capture
        pass
    finally:
        if writer is not None:
            writer.close()
        await service.close()
    if state.get("closed"):                               # stdout's reader is gone: no flush error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if table is not None:
        stats = table.flows(state["names"])
        lines = [json.dumps(flow_json(s)) for s in stats] if args.json else flow_table_lines(stats)
        sys.stdout.writelines(line + "\n" for line in lines)
    extra = f", {state['dropped']} dropped by a slow consumer" if state["dropped"] else ""
    wrote = f", written to {args.write}" if writer is not None else ""
    _say(f"{state['frames']} frames captured{extra}{wrote}")
    if state.get("ended"):
        _say("the capture ended on every node before --count/--seconds (see the notices above)")
        return 1
    return 0


def _stop_on_signals(task) -> None:
    """SIGTERM and SIGHUP end the capture like Ctrl-C does (the remote tcpdumps are stopped)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


async def _stream(service, args, fmt, writer, state: dict, table) -> None:
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
                if table is not None:
                    table.add_many(frames)
                    learn_names(state["names"], frames)
                    lines = []
                else:
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
        except TimeoutError:
            pass
    else:
        await consume()
