"""The command line: one front door onto :mod:`core.service`.

Subcommands live in ``core/cli_*.py``, each with ``register(subparsers)``. With no subcommand the
launcher opens the console (the TUI), which core never imports: the launcher passes it in.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from core import logs
from core.errors import OverlayError

log = logging.getLogger(__name__)

SUBCOMMAND_MODULES = ["core.cli.lab", "core.cli.status", "core.cli.runbook", "core.cli.network",
                      "core.cli.capture", "core.cli.serve", "core.cli.record",
                      "core.cli.doctor", "core.cli.links", "core.cli.trace", "core.cli.node"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with one line, as argparse does, but no usage dump
        self.exit(2, f"overlay-tui: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="overlay-tui", description="Operator console for Docker overlay networks over etcd.")
    parser.add_argument("--inventory", "-i", metavar="FILE", help="TOML inventory of your nodes (default: the lab's, when it is up)")
    parser.add_argument("--read-only", action="store_true", help="console: disable every mutating action")
    parser.add_argument("--replay-state", metavar="FILE", help="console: show state recorded with `overlay-tui record` instead of live nodes")
    parser.add_argument("--debug", action="store_true",
                        help="log at DEBUG and print the traceback of an unexpected error (the log file is "
                             "overlay-tui.log in the state dir)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub)
    return parser


def report_unexpected(exc: BaseException, debug: bool) -> int:
    """A bug, not a failure on the nodes: log its traceback, say where it is in one line; exit 1."""
    log.error("unexpected error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    where = logs.current_path()
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    seen = f"; the traceback is in {where}" if where else ""
    again = "" if debug else " (or run again with --debug)"
    print(f"overlay-tui: unexpected error {type(exc).__name__}: {logs.neutral(str(exc))[:200]}{seen}{again}",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None, console: Callable[[argparse.Namespace], int] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(debug=args.debug)
    log.info("overlay-tui %s", " ".join(sys.argv[1:] if argv is None else argv) or "(console)")
    try:
        if args.command is None:
            if console is None:
                parser.print_help()
                return 2
            code = console(args)
        else:
            code = args.func(args)
    except OverlayError as e:
        log.info("failed: %s", e, exc_info=args.debug)
        print(f"overlay-tui: {e}", file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - the last line of defence: a bug gets one line and the log
        return report_unexpected(e, args.debug)
    log.info("exit %s", code)
    return code
