"""The command line: one front door onto :mod:`core.service`.

Subcommands live in ``core/cli_*.py``, each with ``register(subparsers)``. With no subcommand the
launcher opens the console (the TUI), which core never imports: the launcher passes it in.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from core.errors import OverlayError

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
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
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


def main(argv: list[str] | None = None, console: Callable[[argparse.Namespace], int] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["OVERLAY_TUI_DEBUG"] = "1"
    try:
        if args.command is None:
            if console is None:
                parser.print_help()
                return 2
            return console(args)
        return args.func(args)
    except OverlayError as e:
        print(f"overlay-tui: {e}", file=sys.stderr)
        return e.exit_code
