"""`overlay-tui serve`: serve the console over SSH to operators whose keys are on the access list."""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from core.cli.run import run_async


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the console over SSH (one console process per operator session)",
        description="Serve the console over SSH: every operator whose public key is on the access list gets a "
                    "console of their own with `ssh -t -p PORT HOST`. Public keys only; refused attempts are "
                    "logged. The host key's fingerprint is printed at start so operators can check it.")
    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="address to listen on (default 127.0.0.1:2222; a non-loopback address is logged)")
    p.add_argument("--authorized-keys", metavar="FILE", default="~/.ssh/authorized_keys",
                   help="the access list: OpenSSH authorized_keys of the operators (default ~/.ssh/authorized_keys)")
    p.add_argument("--host-key", metavar="FILE", default=None,
                   help="the server's private host key, made on first use (default STATE/serve/host_key)")
    p.add_argument("--max-sessions", metavar="N", type=int, default=8, help="concurrent consoles (default 8)")
    p.add_argument("--max-sessions-per-key", metavar="N", type=int, default=4,
                   help="concurrent consoles one key may hold (default 4)")
    p.add_argument("--idle-timeout", metavar="SECONDS", type=float, default=3600.0,
                   help="hang up a console after this long without a key press (default 3600; 0: never)")
    p.add_argument("--console-memory", metavar="MB", type=int, default=2048,
                   help="address-space limit of each console process in MiB (default 2048; 0: none)")
    p.add_argument("--max-startups", metavar="N[:PER_ADDR]", default="32:8",
                   help="connections not yet authenticated, in all and per client address (default 32:8)")
    p.add_argument("--no-warm-spare", action="store_true",
                   help="do not keep a console started ahead of the next session (saves its memory; "
                        "each session then waits for Python and Textual to start)")
    p.add_argument("--log", metavar="FILE", default=None, help="access log, appended (default STATE/serve/access.log)")
    # The same as the top-level options; SUPPRESS keeps `overlay-tui --read-only serve` working too.
    p.add_argument("--inventory", "-i", metavar="FILE", default=argparse.SUPPRESS, help="inventory for every console")
    p.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                   help="serve a console in which every mutating action is unavailable")
    p.add_argument("--replay-state", metavar="FILE", default=argparse.SUPPRESS,
                   help="serve recorded state (from `overlay-tui record`) instead of live nodes")
    p.add_argument("--console-command", metavar="CMD", default=None, help=argparse.SUPPRESS)  # tests: a stand-in
    p.set_defaults(func=lambda args: run_async(_serve(args)))


def build_config(args: argparse.Namespace):
    """Check every option and resolve the inventory once, so a bad one fails here and not per session."""
    from core.errors import UsageError
    from core.serve.server import DEFAULT_LISTEN, ServeConfig, console_argv, console_options, parse_listen, serve_dir

    host, port = parse_listen(args.listen or DEFAULT_LISTEN)
    if args.max_sessions < 1:
        raise UsageError(f"--max-sessions {args.max_sessions}: must be at least 1")
    if args.max_sessions_per_key < 1:
        raise UsageError(f"--max-sessions-per-key {args.max_sessions_per_key}: must be at least 1")
    if args.idle_timeout < 0 or args.console_memory < 0:
        raise UsageError("--idle-timeout and --console-memory cannot be negative")
    if 0 < args.console_memory < 256:
        raise UsageError(f"--console-memory {args.console_memory}: a console needs at least 256 MiB")
    total, _, per_addr = args.max_startups.partition(":")
    if not total.isdigit() or int(total) < 1 or (per_addr and (not per_addr.isdigit() or int(per_addr) < 1)):
        raise UsageError(f"--max-startups {args.max_startups}: expected N or N:PER_ADDR, both at least 1")
    replay = args.replay_state
    if replay and not Path(replay).is_file():
        raise UsageError(f"--replay-state {replay}: no such file (record one with `overlay-tui record`)")
    inventory = args.inventory
    if inventory or not replay:
        from core.live import resolve_inventory

        inventory = os.path.abspath(resolve_inventory(inventory).path)
    options = console_options(inventory, args.read_only, replay and os.path.abspath(replay))
    argv = shlex.split(args.console_command) if args.console_command else console_argv(options)
    return ServeConfig(host=host, port=port, authorized_keys=Path(args.authorized_keys).expanduser(),
                       host_key=Path(args.host_key).expanduser() if args.host_key else serve_dir() / "host_key",
                       max_sessions=args.max_sessions, console_argv=argv,
                       console_options=None if args.console_command else options, warm_spare=not args.no_warm_spare,
                       log_file=Path(args.log).expanduser() if args.log else serve_dir() / "access.log",
                       max_sessions_per_key=args.max_sessions_per_key, idle_timeout=args.idle_timeout,
                       console_memory=args.console_memory * 1024 * 1024, max_startups=int(total),
                       max_startups_per_addr=min(int(per_addr or total), int(total)))


async def _serve(args: argparse.Namespace) -> int:
    from core.serve.server import run_server, setup_logging

    config = build_config(args)
    setup_logging(config.log_file)
    return await run_server(config)
