"""SIGHUP and SIGTERM end the console and a CLI command through their closing path: the SSH pool's
temporary forward-socket directory (overlay-tui-fwd-*) is removed, on the real lab."""
from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[1]


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.05)        # polling a condition with a bound, not synchronising on time


def _fwd_dirs(tmp: Path) -> list[Path]:
    return list(tmp.glob("overlay-tui-fwd-*"))


def _drain(fd: int) -> None:
    """Read the console's terminal output so it never blocks writing."""
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_the_console_killed_by_a_signal_removes_its_forward_dir(lab2, tmp_path, sig):
    master, slave = pty.openpty()
    env = {**os.environ, "TMPDIR": str(tmp_path), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "36"}
    proc = subprocess.Popen([sys.executable, "-m", "tui.launcher", "--inventory", lab2.inventory_path],
                            cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    try:
        _wait_for(lambda: any(d.glob("*.sock") for d in _fwd_dirs(tmp_path)), 60,
                  "the console forwarded a docker socket")
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert _fwd_dirs(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_cli_command_killed_by_a_signal_removes_its_forward_dir(lab2, tmp_path, sig):
    out = tmp_path / "state.json"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "tui.launcher", "--inventory", lab2.inventory_path,
                             "record", "--out", str(out), "--capture", "120"],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: any(d.glob("*.sock") for d in _fwd_dirs(tmp_path)), 60,
                  "the command forwarded a docker socket")
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert f"ended by {signal.Signals(sig).name}" in err and "Traceback" not in err
    assert _fwd_dirs(tmp_path) == []
