"""Ending a batch command's process without tearing the interpreter down.

A command that has written all its output and holds nothing that needs closing (``capture --read``)
calls :func:`allow`; the program's entry (:func:`tui.launcher.main`, only when it runs as the program,
never when called with arguments in-process) then calls :func:`end`: stdout and stderr flushed,
logging shut down, and ``os._exit``. Freeing every array, string and module one by one costs
40-80 ms at exit, several percent of such a command's wall clock on a big file.
"""
from __future__ import annotations

import logging
import os
import sys

_allowed = False


def allow() -> None:
    """This process's command is done and has nothing left to close."""
    global _allowed
    _allowed = True


def end(code: int) -> None:
    """End the process now with ``code`` if :func:`allow` was called (else return: a normal exit)."""
    if not _allowed:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return                          # let the interpreter's own exit deal with it, as always
    logging.shutdown()
    os._exit(code)
