"""The ``overlay-tui`` entry point: subcommands go to core's CLI, no subcommand opens the console."""
from __future__ import annotations

import argparse
import os
import sys

from core.files import SERVED_SESSION_ENV


def run_console(args: argparse.Namespace) -> int:
    """Open the Textual console on the live nodes (or on recorded state)."""
    from tui.app import run_app  # imported here so subcommands never load textual

    return run_app(inventory=args.inventory, read_only=args.read_only, replay_state=args.replay_state,
                   served_session=os.environ.get(SERVED_SESSION_ENV) or None)


def main(argv: list[str] | None = None) -> int:
    from core.cli.main import main as cli_main

    code = cli_main(argv, console=run_console)
    if argv is None:                       # the program itself: a batch command may end without teardown
        from core.cli import quick_exit
        quick_exit.end(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
