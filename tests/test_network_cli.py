"""`overlay-tui network ls|create|delete` as an operator runs it: a subprocess with --inventory, on the lab."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
CLI = str(Path(sys.executable).parent / "overlay-tui")


def cli(lab, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "--inventory", lab.inventory_path, "network", *args], stdin=stdin,
                          capture_output=True, text=True, timeout=120)



def test_create_ls_delete_round_trip(classic2):
    res = cli(classic2, "create", "cli-test", "--subnet", "198.19.190.0/24", "--node", "docker-node2")
    assert res.returncode == 0, res.stderr
    assert "created overlay network cli-test" in res.stdout and "docker-node1, docker-node2" in res.stdout
    try:
        deadline = time.monotonic() + 30       # the classic store is eventually consistent: poll, bounded
        while True:
            res = cli(classic2, "ls", "--json")
            assert res.returncode == 0, res.stderr
            net = next(n for n in json.loads(res.stdout) if n["name"] == "cli-test")
            if len(net["nodes"]) == 2 or time.monotonic() > deadline:
                break
        assert (net["driver"], net["scope"], net["subnet"], net["nodes"], net["attachable"]) == \
            ("overlay", "global", "198.19.190.0/24", ["docker-node1", "docker-node2"], True)
        table = cli(classic2, "ls")
        row = next(ln for ln in table.stdout.splitlines() if ln.startswith("cli-test "))
        assert net["id"][:12] in row and "global" in row and "docker-node1,docker-node2" in row
        refused = cli(classic2, "delete", "cli-test")            # no terminal, no --yes
        assert refused.returncode == 2 and "add --yes" in refused.stderr and "Traceback" not in refused.stderr
        assert "cli-test" in cli(classic2, "ls").stdout
    finally:
        res = cli(classic2, "delete", "cli-test", "--yes")
    assert res.returncode == 0, res.stderr
    assert "deleted overlay network cli-test" in res.stdout
    assert "cli-test" not in cli(classic2, "ls").stdout


def test_bad_input_gives_one_clear_line(classic2):
    cases = [
        (("create", "bad name"), 2, "'bad name' is not a valid Docker name"),
        (("create", "x1", "--subnet", "198.19.191.5/24"), 2, "did you mean 198.19.191.0/24"),
        (("create", "x1", "--subnet", "nonsense/x"), 2, "give an IPv4 CIDR"),
        (("create", "x1", "--subnet", "198.19.191.0/31"), 2, "the prefix must be /8 to /30"),
        (("create", "x1", "--node", "docker-node9"), 2, "unknown node 'docker-node9'"),
        (("delete", "no-such-net", "--yes"), 1, "no overlay network named 'no-such-net'"),
    ]
    for args, code, message in cases:
        res = cli(classic2, *args)
        assert res.returncode == code, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert "x1" not in cli(classic2, "ls").stdout


def test_duplicate_name_is_refused(classic2):
    assert cli(classic2, "create", "cli-dup", "--subnet", "198.19.189.0/24").returncode == 0
    try:
        res = cli(classic2, "create", "cli-dup")
        assert res.returncode == 2 and "a network named 'cli-dup' already exists" in res.stderr
    finally:
        assert cli(classic2, "delete", "cli-dup", "--yes").returncode == 0


def _delete_on_a_terminal(lab, name: str, answer: str) -> subprocess.CompletedProcess:
    """`network delete NAME` with a pty as stdin (a terminal), typing ``answer``."""
    import os

    master, slave = os.openpty()
    try:
        os.write(master, answer.encode() + b"\n")
        return cli(lab, "delete", name, stdin=slave)
    finally:
        os.close(master)
        os.close(slave)


def test_delete_asks_on_a_terminal(classic2):
    assert cli(classic2, "create", "cli-ask", "--subnet", "198.19.179.0/24").returncode == 0
    try:
        res = _delete_on_a_terminal(classic2, "cli-ask", "n")
        assert res.returncode == 2 and "Delete overlay network cli-ask" in res.stdout
        assert "not confirmed; nothing was deleted" in res.stderr
        assert "cli-ask" in cli(classic2, "ls").stdout
        res = _delete_on_a_terminal(classic2, "cli-ask", "y")
        assert res.returncode == 0 and "deleted overlay network cli-ask" in res.stdout
        assert "cli-ask" not in cli(classic2, "ls").stdout
    finally:
        cli(classic2, "delete", "cli-ask", "--yes")
