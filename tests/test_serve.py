"""`overlay-tui serve`: the console over SSH, driven by the real OpenSSH client on a pty and by asyncssh.

The bridge tests run a tiny stand-in console (tests/serve_helpers.STANDIN) so they can make a session
crash, hang or leave a grandchild behind; the console tests run the real console on recorded state
(deterministic) and on the live lab.
"""
from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from serve_helpers import (
    OVERLAY_TUI,
    ROOT,
    STANDIN,
    ServeProcess,
    SSHTerminal,
    children_of,
    console_pids,
    fingerprint,
    make_key,
    pid_alive,
    wait_until,
    window_size_of,
)

NO_TERMINAL = "this server serves an interactive console; connect with a terminal (ssh -t)"


@pytest.fixture
def keys(tmp_path):
    """An operator key on the access list and a stranger's key that is not."""
    key = make_key(tmp_path / "operator")
    stranger = make_key(tmp_path / "stranger")
    access = tmp_path / "authorized_keys"
    access.write_text("# operators\n" + (tmp_path / "operator.pub").read_text())
    return {"key": key, "stranger": stranger, "access": access, "dir": tmp_path}


def standin_server(keys, *args: str) -> ServeProcess:
    script = keys["dir"] / "standin.py"
    script.write_text(STANDIN)
    cmd = shlex.join([sys.executable, str(script)])
    return ServeProcess(keys["dir"], keys["access"], ("--replay-state", str(script), "--console-command", cmd, *args))


# --- the bridge, on the stand-in console -----------------------------------------------------------------
def test_openssh_session_gets_keys_resizes_and_quits_with_status_0(keys):
    with standin_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=90, rows=25) as t:
        t.expect(r"SIZE 90x25 TERM=xterm-256color")
        t.send("a")
        t.expect(r"KEY b'a'")
        t.resize(120, 40)
        t.expect(r"SIZE 120x40")
        t.send("q")
        assert t.wait_exit() == 0
    log = srv.log.read_text()
    assert "ADMITTED" in log and fingerprint(keys["key"]) in log
    assert stat.S_IMODE(srv.log.stat().st_mode) == 0o600


def test_the_console_exit_status_becomes_the_session_status(keys):
    with standin_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as t:
        t.expect(r"READY")
        t.send("x")
        assert t.wait_exit() == 3


def test_a_session_without_a_terminal_gets_one_line_and_status_1(keys):
    with standin_server(keys) as srv:
        for command in ((), ("ls", "/")):
            res = subprocess.run(srv.ssh_argv(keys["key"], "-T", command=command), capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=20)
            assert res.returncode == 1
            assert res.stderr.strip() == f"overlay-tui: {NO_TERMINAL}"
            assert res.stdout == ""


def test_a_command_with_a_terminal_is_refused_not_run(keys):
    with standin_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt", command=("touch", "/tmp/x"))) as t:
        t.expect(r"runs no commands, only the console")
        assert t.wait_exit() == 1


def test_an_unknown_key_is_refused_and_logged(keys):
    with standin_server(keys) as srv:
        res = subprocess.run(srv.ssh_argv(keys["stranger"], "-T"), capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=20)
        wait_until(lambda: "REFUSED peer=" in srv.log.read_text(), what="the refusal in the log")
    assert res.returncode == 255 and "Permission denied (publickey)" in res.stderr
    log = srv.log.read_text()
    assert "REFUSED KEY peer=127.0.0.1:" in log and fingerprint(keys["stranger"]) in log
    assert "ADMITTED" not in log
    assert fingerprint(keys["stranger"]) in srv.stderr()  # logged to stderr as well


def test_a_listed_key_is_admitted_whatever_the_user_name(keys):
    with standin_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt", "-l", "nobody-here")) as t:
        t.expect(r"READY")
        t.send("q")
        assert t.wait_exit() == 0
    assert "ADMITTED peer=127.0.0.1:" in srv.log.read_text() and "user=nobody-here" in srv.log.read_text()


async def test_passwords_and_keyboard_interactive_are_refused(keys):
    with standin_server(keys) as srv:
        res = subprocess.run(srv.ssh_argv(keys["key"], "-T", "-o", "PubkeyAuthentication=no",
                                          "-o", "PreferredAuthentications=password,keyboard-interactive"),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=20)
        assert res.returncode == 255 and "Permission denied (publickey)" in res.stderr
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", srv.port, username="root", password="root", client_keys=None,
                                   known_hosts=str(srv.known_hosts), agent_path=None, preferred_auth="password")
        wait_until(lambda: srv.log.read_text().count("REFUSED peer=") >= 2, what="both refusals in the log")
    assert "ADMITTED" not in srv.log.read_text()


async def test_no_forwarding_and_no_subsystems(keys):
    with standin_server(keys) as srv:
        async with asyncssh.connect("127.0.0.1", srv.port, username="op", client_keys=[str(keys["key"])],
                                    known_hosts=str(srv.known_hosts), agent_path=None) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", srv.port)
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 22)
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.start_sftp_client()
    assert "refused subsystem 'sftp'" in srv.log.read_text()


async def _asyncssh_console(srv: ServeProcess, key: Path, size=(100, 30)):
    conn = await asyncssh.connect("127.0.0.1", srv.port, username="op", client_keys=[str(key)],
                                  known_hosts=str(srv.known_hosts), agent_path=None)
    proc = await conn.create_process(term_type="xterm-256color", term_size=size, encoding=None)
    return conn, proc


async def _read_until(proc, pattern: bytes, timeout: float = 15.0) -> bytes:
    import asyncio

    buf = b""

    async def loop():
        nonlocal buf
        while not re.search(pattern, buf):
            chunk = await proc.stdout.read(65536)
            if not chunk:
                raise AssertionError(f"{pattern!r} not seen before EOF: {buf[-500:]!r}")
            buf += chunk

    await asyncio.wait_for(loop(), timeout)
    return buf


async def test_two_sessions_at_once_and_the_bound_on_sessions(keys):
    with standin_server(keys, "--max-sessions", "2") as srv:
        (c1, p1), (c2, p2) = [await _asyncssh_console(srv, keys["key"]) for _ in range(2)]
        pid1 = int(re.search(rb"PID (\d+)", await _read_until(p1, rb"READY")).group(1))
        pid2 = int(re.search(rb"PID (\d+)", await _read_until(p2, rb"READY")).group(1))
        assert pid1 != pid2  # one process per session
        c3, p3 = await _asyncssh_console(srv, keys["key"])
        over = await p3.wait(timeout=15)
        assert over.exit_status == 1 and over.stderr == b"overlay-tui: all 2 console sessions are in use; try again later\r\n"
        c3.close()
        p1.stdin.write(b"z")
        await _read_until(p1, rb"KEY b'z'")
        p1.stdin.write(b"q")
        assert (await p1.wait(timeout=15)).exit_status == 0
        c4, p4 = await _asyncssh_console(srv, keys["key"])  # a slot is free again
        await _read_until(p4, rb"READY")
        p2.change_terminal_size(132, 43)
        await _read_until(p2, rb"SIZE 132x43")
        for p in (p2, p4):
            p.stdin.write(b"q")
            assert (await p.wait(timeout=15)).exit_status == 0
        for c in (c1, c2, c4):
            c.close()


async def test_a_crashed_or_hung_session_does_not_disturb_the_others(keys):
    with standin_server(keys) as srv:
        (ca, pa), (cb, pb), (cc, pc) = [await _asyncssh_console(srv, keys["key"]) for _ in range(3)]
        pid_a, _, pid_c = [int(re.search(rb"PID (\d+)", await _read_until(p, rb"READY")).group(1))
                           for p in (pa, pb, pc)]
        pa.stdin.write(b"c")  # crash: SIGSEGV
        assert (await pa.wait(timeout=15)).exit_status == 128 + 11
        assert not pid_alive(pid_a)
        pc.stdin.write(b"h")  # hang, deaf to SIGHUP
        await _read_until(pc, rb"HANGING")
        pb.stdin.write(b"k")
        await _read_until(pb, rb"KEY b'k'")  # the others still answer
        cc.close()  # the operator of the hung console goes away: the server kills it
        wait_until(lambda: not pid_alive(pid_c), timeout=10, what="the hung console to be killed")
        pb.stdin.write(b"l")
        await _read_until(pb, rb"KEY b'l'")
        pb.stdin.write(b"q")
        assert (await pb.wait(timeout=15)).exit_status == 0
        ca.close(), cb.close()


def _rss_kb(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


async def test_a_client_that_does_not_read_holds_back_its_console_not_the_server(keys):
    import asyncio

    with standin_server(keys) as srv:
        (cf, pf), (co, po) = [await _asyncssh_console(srv, keys["key"]) for _ in range(2)]
        await _read_until(pf, rb"READY")
        await _read_until(po, rb"READY")
        rss = _rss_kb(srv.proc.pid)
        pf.stdin.write(b"f")  # the console floods; its client reads nothing more
        await _read_until(pf, rb"FLOOD")
        for ch in "abdeijk":  # meanwhile the other session answers every key
            po.stdin.write(ch.encode())
            await _read_until(po, f"KEY b'{ch}'".encode())
            await asyncio.sleep(0.2)  # let the flood run: the server must not buffer it
        assert _rss_kb(srv.proc.pid) - rss < 20_000, "the server buffered the flood"
        got = 0
        while got < 4_000_000:  # reading again resumes the flow
            got += len(await asyncio.wait_for(pf.stdout.read(1 << 20), 10))
        po.stdin.write(b"q")
        assert (await po.wait(timeout=15)).exit_status == 0
        cf.close(), co.close()


def test_a_client_that_goes_away_takes_its_console_and_its_children_with_it(keys):
    with standin_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as t:
        pid = int(t.expect(r"PID (\d+) READY").group(1))
        t.send("g")
        grandchild = int(t.expect(r"GRANDCHILD (\d+)").group(1))
        assert pid_alive(pid) and pid_alive(grandchild)
        t.proc.kill()  # the client vanishes without a word
        wait_until(lambda: not pid_alive(pid) and not pid_alive(grandchild), timeout=10,
                   what="the console and its child to be gone")
        assert "client went away" in srv.log.read_text()


def test_stopping_the_server_hangs_up_every_console(keys):
    with standin_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as t:
        pid = int(t.expect(r"PID (\d+) READY").group(1))
        srv.__exit__(None, None, None)
        assert srv.exit_status == 0
        wait_until(lambda: not pid_alive(pid), timeout=5, what="the console to be gone")
        assert t.wait_exit() != 0


# --- keys and start-up checks --------------------------------------------------------------------------
def test_the_host_key_is_made_once_with_mode_0600_and_reused(keys):
    with standin_server(keys) as first:
        pass
    assert stat.S_IMODE(first.host_key.stat().st_mode) == 0o600
    content = first.host_key.read_bytes()
    with standin_server(keys) as second, SSHTerminal(second.ssh_argv(keys["key"], "-tt")) as t:
        t.expect(r"READY")  # the client checked the host key strictly against the file's public half
        t.send("q")
        assert t.wait_exit() == 0
    assert second.host_fingerprint == first.host_fingerprint and first.host_fingerprint.startswith("SHA256:")
    assert second.host_key.read_bytes() == content


def _serve_fails(keys, *args: str) -> subprocess.CompletedProcess:
    """Start serve with a good inventory, access list and host key path, overridden by ``args``; it must fail."""
    base = ["--inventory", str(_inventory(keys["dir"])), "--authorized-keys", str(keys["access"]),
            "--host-key", str(keys["dir"] / "hk")]
    return subprocess.run([OVERLAY_TUI, "serve", *base, *args], cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)


@pytest.mark.parametrize("args, message", [
    (["--inventory", "/nonexistent/inv.toml"], "/nonexistent/inv.toml: no such file"),
    (["--authorized-keys", "/nonexistent/keys"], "--authorized-keys /nonexistent/keys: no such file"),
    (["--listen", "127.0.0.1:99999"], "--listen 127.0.0.1:99999: the port must be a number"),
    (["--max-sessions", "0"], "--max-sessions 0: must be at least 1"),
    (["--replay-state", "/nonexistent/state.json"], "--replay-state /nonexistent/state.json: no such file"),
])
def test_bad_options_fail_at_start_with_a_sentence_naming_them(args, message, keys):
    res = _serve_fails(keys, *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr


def test_an_empty_access_list_and_an_open_host_key_are_refused(keys):
    empty = keys["dir"] / "empty_keys"
    empty.write_text("# nobody yet\n")
    res = _serve_fails(keys, "--authorized-keys", str(empty))
    assert res.returncode == 2 and "lists no usable keys" in res.stderr
    open_key = keys["dir"] / "open_host_key"
    open_key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    open_key.chmod(0o644)
    res = _serve_fails(keys, "--host-key", str(open_key))
    assert res.returncode == 2 and "chmod 600" in res.stderr


def test_listen_addresses():
    from core.serve.server import is_loopback, parse_listen

    assert parse_listen("127.0.0.1:2222") == ("127.0.0.1", 2222)
    assert parse_listen("[::1]:2200") == ("::1", 2200)
    assert parse_listen(":2022") == ("127.0.0.1", 2022) == parse_listen("2022")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("198.18.0.1")


def _inventory(d: Path) -> Path:
    inv = d / "inventory.toml"
    inv.write_text('[[node]]\nname = "docker-node1"\naddress = "198.18.0.1"\n')
    return inv


# --- the real console ----------------------------------------------------------------------------------
RECORDED = ROOT / "tests" / "fixtures" / "lab_state.json"


def _recorded_nodes() -> list[str]:
    return [n["name"] for n in json.loads(RECORDED.read_text())["inventory"]["nodes"]]


def _box_line(width: int) -> str:
    """A screen line that is a pane's top border exactly ``width`` columns wide."""
    return rf"(?m)^╭[^\r\n]{{{width - 2}}}╮\r?$"


def recorded_server(keys, *args: str) -> ServeProcess:
    return ServeProcess(keys["dir"], keys["access"], ("--replay-state", str(RECORDED), *args))


def test_the_recorded_console_over_openssh_keys_resize_quit(keys):
    with recorded_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=120, rows=36) as t:
        for node in _recorded_nodes():
            t.expect(re.escape(node))
        t.expect(r"etcd members")
        t.expect(_box_line(120))  # a pane border spans the whole 120 columns
        pid = console_pids(srv.log)[0]
        assert window_size_of(pid) == (120, 36)
        t.send("?")  # the help screen lists every key
        t.expect(r"overlay-tui keys")
        t.send("\x1b")
        t.expect(r"etcd members")
        t.resize(90, 28)  # the console re-lays out for the new size
        t.expect(_box_line(90))
        t.expect(re.escape(_recorded_nodes()[0]))
        assert window_size_of(pid) == (90, 28)
        t.send("q")
        assert t.wait_exit() == 0
    wait_until(lambda: not pid_alive(pid), timeout=5, what="the console to be gone")


def test_a_read_only_console_says_so_and_cannot_create_a_network(keys):
    with recorded_server(keys, "--read-only") as srv, \
            SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=120, rows=36) as t:
        t.expect(r"READ-ONLY")
        t.expect(r"demo")
        t.send("3")  # focus the networks pane: its keys show in the footer
        t.expect(r"c Create")
        t.send("c")  # create a network
        t.expect(r"creating networks is not available: this console is")
        assert "--read-only" in Path(f"/proc/{console_pids(srv.log)[0]}/cmdline").read_text().split("\0")
        t.send("q")
        assert t.wait_exit() == 0


def test_a_tui_package_in_the_servers_directory_does_not_replace_the_console(keys):
    shadow = keys["dir"] / "elsewhere" / "tui"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "launcher.py").write_text("print('SHADOWED')\n")
    srv = recorded_server(keys)
    srv.cwd = shadow.parent
    with srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=120, rows=36) as t:
        t.expect(r"etcd members")
        assert "SHADOWED" not in t.text()
        t.send("q")
        assert t.wait_exit() == 0


def test_a_warm_spare_console_is_ready_before_anyone_connects(keys):
    with recorded_server(keys) as srv:
        wait_until(lambda: children_of(srv.proc.pid), what="the spare console")
        spare = children_of(srv.proc.pid)[0]
        with SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=120, rows=36) as t:
            t.expect(r"etcd members")
            t.expect(_box_line(120))
            t.send("q")
            assert t.wait_exit() == 0
        assert console_pids(srv.log) == [spare]
        assert f"console started (pid {spare}, warm spare" in srv.log.read_text()
        assert not pid_alive(spare)


def test_without_a_warm_spare_each_session_starts_its_console(keys):
    with recorded_server(keys, "--no-warm-spare") as srv, \
            SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=100, rows=30) as t:
        t.expect(r"etcd members")
        t.send("q")
        assert t.wait_exit() == 0
        assert "cold start" in srv.log.read_text() and "warm spare" not in srv.log.read_text()


@pytest.mark.parametrize("warm", [True, False])
async def test_the_clients_terminal_type_and_colour_hint_reach_the_console(keys, warm):
    with recorded_server(keys, *([] if warm else ["--no-warm-spare"])) as srv:
        for env, truecolor in (({"COLORTERM": "truecolor"}, True), ({}, False)):
            conn = await asyncssh.connect("127.0.0.1", srv.port, username="op", client_keys=[str(keys["key"])],
                                          known_hosts=str(srv.known_hosts), agent_path=None)
            proc = await conn.create_process(term_type="xterm-256color", term_size=(120, 36), encoding=None,
                                             env=env)
            screen = await _read_until(proc, rb"etcd members")
            assert (b"\x1b[38;2;" in screen) is truecolor and (b"\x1b[38;5;" in screen) is not truecolor
            proc.stdin.write(b"q")
            assert (await proc.wait(timeout=15)).exit_status == 0
            conn.close()
    assert srv.log.read_text().count("warm spare" if warm else "cold start") >= 1


async def test_two_real_consoles_at_once(keys):
    with recorded_server(keys) as srv:
        (c1, p1), (c2, p2) = [await _asyncssh_console(srv, keys["key"], size) for size in ((120, 36), (100, 30))]
        for p in (p1, p2):
            await _read_until(p, re.escape(_recorded_nodes()[-1]).encode())
        pids = console_pids(srv.log)
        assert len(set(pids)) == 2
        p1.stdin.write(b"q")
        assert (await p1.wait(timeout=15)).exit_status == 0
        p2.change_terminal_size(110, 33)  # the other one is still alive and re-lays out
        await _read_until(p2, rb"\x1b\[33;\d+H")
        p2.stdin.write(b"q")
        assert (await p2.wait(timeout=15)).exit_status == 0
        c1.close(), c2.close()


@pytest.mark.lab
def test_the_live_console_shows_the_lab_nodes_over_ssh(lab2, keys):
    with ServeProcess(keys["dir"], keys["access"], ("--inventory", lab2.inventory_path, "--read-only")) as srv, \
            SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=120, rows=36) as t:
        for node in lab2.nodes:
            t.expect(re.escape(node.name), timeout=30)
        t.expect(r"2/2 reachable", timeout=30)
        t.send("3")
        t.expect(r"c Create")
        t.send("c")
        t.expect(r"creating networks is not available: this console is")
        t.send("q")
        assert t.wait_exit() == 0
