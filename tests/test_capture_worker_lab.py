"""A served console on the real lab captures through its own capture worker process, and stopping ends it.

(The live path's decoding and naming through the worker: tests/test_capture_live.py; the worker's protocol:
tests/test_capture_worker.py.)
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve_helpers import ServeProcess, SSHTerminal, children_of, console_pids, make_key, pid_alive, wait_until

pytestmark = pytest.mark.lab


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(console: int) -> list[int]:
    return [p for p in children_of(console) if "core.capture.worker" in _cmdline(p) and pid_alive(p)]


def test_a_served_console_on_the_lab_captures_in_a_worker_that_stops_with_the_capture(lab2, tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLAY_TUI_INVENTORY", str(lab2.inventory_path))
    monkeypatch.setenv("OVERLAY_TUI_STATE", str(tmp_path / "state"))
    key = make_key(tmp_path / "operator")
    access = tmp_path / "authorized_keys"
    access.write_text((tmp_path / "operator.pub").read_text())
    with ServeProcess(tmp_path, access, ("--no-warm-spare",)) as srv, \
            SSHTerminal(srv.ssh_argv(key, "-tt"), cols=160, rows=40) as t:
        t.expect(r"etcd members", timeout=30)
        console = console_pids(srv.log)[0]
        t.send("4")
        for attempt in range(3):              # a key can sit unread until the next one arrives: press again
            t.send("s")
            try:
                t.expect(r"Capture[^A-Za-z0-9]*VXLAN[^A-Za-z0-9]*frames[^A-Za-z0-9]*on", timeout=5)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        t.send("\x13")                        # ctrl+s: start on every node
        t.expect(r"capturing[^A-Za-z0-9]*on[^A-Za-z0-9]*docker-node1", timeout=30)
        wait_until(lambda: len(_workers(console)) == 1, timeout=10, what="the capture worker")
        worker = _workers(console)[0]
        for attempt in range(3):
            t.send("x")                       # stop: the worker stops the remote tcpdumps and exits
            try:
                wait_until(lambda: not pid_alive(worker), timeout=15, what="the worker to end")
                break
            except AssertionError:
                if attempt == 2:
                    raise
        t.send("q")
        assert t.wait_exit() == 0
