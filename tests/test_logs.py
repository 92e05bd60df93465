"""The log file (core/logs.py): where it is, its mode, rotation, what the CLI and the console write there."""
from __future__ import annotations

import logging
import os
import stat

import pytest
from tui_fixtures import SIZE, STATE, settle, steady

from core import logs
from core.cli.main import main
from core.errors import NodeUnreachable, UsageError
from core.recorded.service import RecordedService
from tui.app import OverlayApp


@pytest.fixture
def log_file(tmp_path, monkeypatch):
    """Logging configured into a fresh state dir; restored afterwards."""
    monkeypatch.setenv("OVERLAY_TUI_STATE", str(tmp_path / "state"))
    yield tmp_path / "state" / logs.LOG_NAME
    logs.configure(path=tmp_path / "after.log")        # detach from the test's file


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_configure_creates_the_file_0600_under_the_state_dir(log_file):
    old_umask = os.umask(0o022)
    try:
        path = logs.configure()
    finally:
        os.umask(old_umask)
    assert path == log_file and log_file.is_file()
    assert _mode(log_file) == 0o600
    logging.getLogger("core.test").info("hello")
    assert "INFO core.test" in log_file.read_text() and "hello" in log_file.read_text()
    logging.getLogger("core.test").debug("hidden")
    assert "hidden" not in log_file.read_text()


def test_rotated_files_are_0600_too_and_bounded(tmp_path):
    handler = logs.PrivateRotatingFileHandler(tmp_path / "r.log", maxBytes=300, backupCount=3)
    record = logging.LogRecord("core.x", logging.INFO, __file__, 1, "x" * 100, None, None)
    for _ in range(40):
        handler.emit(record)
    handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.log", "r.log.1", "r.log.2", "r.log.3"]
    assert all(_mode(tmp_path / f) == 0o600 for f in files)


def test_control_characters_from_nodes_are_neutralised(log_file):
    logs.configure()
    hostile = "node says \x1b[31mred\x1b[0m\nFAKE 2026 ERROR core: forged\r\x07"
    log = logging.getLogger("core.test")
    log.warning("answer: %s", hostile)
    try:
        raise ValueError(hostile)
    except ValueError:
        log.exception("with traceback")
    text = log_file.read_text()
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "\\x1b[31mred" in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())   # no forged line
    assert "Traceback (most recent call last)" in text


def test_neutral_keeps_printable_text_and_escapes_the_rest():
    assert logs.neutral("plain text é ✓") == "plain text é ✓"
    assert logs.neutral("a\nb\tc\x9b") == "a\\nb\\tc\\x9b"
    assert logs.neutral("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


def test_an_unexpected_error_in_the_cli_is_one_line_naming_the_log_and_exit_1(log_file, capsys):
    def console(args):
        raise ZeroDivisionError("a bug in the console")

    assert main([], console=console) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ZeroDivisionError" in err and str(log_file) in err and "--debug" in err
    text = log_file.read_text()
    assert "Traceback (most recent call last)" in text and "a bug in the console" in text
    assert "overlay-tui (console)" in text                  # the command line is logged


def test_debug_prints_the_traceback_and_logs_at_debug(log_file, capsys):
    def console(args):
        logging.getLogger("core.test").debug("debug detail")
        raise KeyError("missing")

    assert main(["--debug"], console=console) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert "debug detail" in log_file.read_text()


def test_a_typed_error_keeps_its_sentence_and_exit_code(log_file, capsys):
    def console(args):
        raise UsageError("bad input here")

    assert main([], console=console) == 2
    assert capsys.readouterr().err == "overlay-tui: bad input here\n"
    assert "failed: bad input here" in log_file.read_text()


class FailingService(RecordedService):
    """Networks fail with a bug, etcd with a typed error."""

    async def networks(self):
        raise RuntimeError("boom in networks")

    async def etcd_cluster(self):
        raise NodeUnreachable("docker-node2", "connection refused")


async def test_every_caught_worker_error_in_the_console_is_logged_with_its_traceback(log_file):
    logs.configure()
    app = steady(OverlayApp(FailingService.load(STATE), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "RuntimeError: boom in networks" in str(app.query_one("#networks").border_subtitle)
    text = log_file.read_text()
    assert "ERROR tui" in text and "RuntimeError: boom in networks" in text
    assert "Traceback (most recent call last)" in text and "in networks" in text   # the frame that raised
    assert "WARNING tui" in text and "docker-node2: connection refused" in text
