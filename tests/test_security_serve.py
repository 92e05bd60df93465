"""The attacks of issue 10 replayed against `overlay-tui serve` on loopback (real OpenSSH client and asyncssh).

Each test states the attack and what must hold: a read-only console saves nothing, a served console saves only in
its session's directory, authorized_keys options are enforced, stalled connections cannot lock out a login, a huge
pty is clamped, the access log cannot be forged, a symlinked host key is refused, SHA-1 is refused.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest
from serve_helpers import ROOT, SSHTerminal, console_pids, make_key, wait_until, window_size_of
from test_serve import _asyncssh_console, _read_until, recorded_server, standin_server

from core.errors import AuthError
from core.model import NodeSpec
from core.ssh import SSHPool, private_key_problem


@pytest.fixture
def keys(tmp_path):
    """An operator key on the access list (0600) and a stranger's key that is not (as in tests/test_serve.py)."""
    key = make_key(tmp_path / "operator")
    stranger = make_key(tmp_path / "stranger")
    access = tmp_path / "authorized_keys"
    access.write_text("# operators\n" + (tmp_path / "operator.pub").read_text())
    access.chmod(0o600)
    return {"key": key, "stranger": stranger, "access": access, "dir": tmp_path}


def _log_lines(srv) -> list[dict]:
    """Every line of the access log, each of which must be one JSON object."""
    return [json.loads(line) for line in srv.log.read_text().splitlines()]


def _ssh(srv, key: Path, *extra: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(srv.ssh_argv(key, "-T", *extra), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


# --- files through a served console -------------------------------------------------------------------------
def W(text: str) -> str:
    """A pattern for ``text`` drawn by Textual, which may skip the spaces already on the screen and wrap a line
    inside a box (so anything but letters and digits may come between two words)."""
    return r"[^A-Za-z0-9]*".join(re.escape(w) for w in text.split())


def _capture_in_console(t: SSHTerminal) -> None:
    t.expect(r"etcd members")
    t.send("4")
    t.expect(W("s Start"))                # the capture pane has the focus: its keys are in the footer
    for attempt in range(3):              # a key can sit unread until the next one arrives: press again
        t.send("s")
        try:
            t.expect(W("Capture VXLAN frames on"), timeout=3)
            break
        except AssertionError:
            if attempt == 2:
                raise
    t.send("\x13")                         # ctrl+s: start on every node (the recording replays)
    t.expect(r"ended", timeout=30)


def test_a_read_only_served_console_cannot_save(keys, tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLAY_TUI_STATE", str(tmp_path / "state"))
    with recorded_server(keys, "--read-only") as srv, \
            SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=120, rows=36) as t:
        _capture_in_console(t)
        for attempt in range(3):          # a key can sit unread until the next one arrives: press again
            t.send("w")
            try:
                t.expect(W("saving a file is not available"), timeout=5)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        assert "Save" not in t.text(t.mark) or "to a pcap file" not in t.text(t.mark)
        t.send("q")
        assert t.wait_exit() == 0
    assert not (tmp_path / "state" / "serve" / "sessions").exists()


def test_a_served_console_saves_in_its_session_directory_and_says_how_to_fetch(keys, tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("OVERLAY_TUI_STATE", str(state))
    with recorded_server(keys) as srv, SSHTerminal(srv.ssh_argv(keys["key"], "-tt"), cols=160, rows=40) as t:
        _capture_in_console(t)
        t.send("w")
        t.expect(W("Served console: a file name only"))   # the modal says where files go
        t.send("\r")                                   # Enter on the offered name
        t.wait_until(lambda: list((state / "serve" / "sessions").glob("*/capture.pcap")), timeout=30,
                     what="the pcap")
        t.expect(r"scp", timeout=10)                    # and how to fetch it from the serving host
        t.send("q")
        assert t.wait_exit() == 0
    saved = list((state / "serve" / "sessions").glob("*/capture.pcap"))
    assert len(saved) == 1 and stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    session = saved[0].parent.name
    assert any(line.get("session") == session for line in _log_lines(srv))   # the log names the session
    assert not (ROOT / "capture.pcap").exists()     # not in the server's working directory


# --- authorized_keys options -------------------------------------------------------------------------------------
def _access_with(keys, lines: list[str]) -> None:
    keys["access"].write_text("\n".join(lines) + "\n")
    keys["access"].chmod(0o600)


def test_authorized_keys_options_are_enforced(keys):
    d = keys["dir"]
    made = {name: make_key(d / name) for name in ("restricted", "forced", "nopty", "expired", "later", "ptyok")}
    pub = {name: (d / f"{name}.pub").read_text().strip() for name in made}
    _access_with(keys, [f"restrict {pub['restricted']}", f'command="/bin/false" {pub["forced"]}',
                        f"no-pty {pub['nopty']}", f'expiry-time="20200101" {pub["expired"]}',
                        f'expiry-time="29990101" {pub["later"]}', f"restrict,pty {pub['ptyok']}"])
    with standin_server(keys) as srv:
        for name, said in (("restricted", "may not have a terminal"), ("nopty", "may not have a terminal"),
                           ("forced", "limited to a command")):
            with SSHTerminal(srv.ssh_argv(made[name], "-tt")) as t:    # asks for a terminal: no console
                assert t.wait_exit() != 0, name
            res = _ssh(srv, made[name])                                  # and says why
            assert res.returncode == 1 and said in res.stderr, (name, res.stderr)
        res = _ssh(srv, made["expired"])
        assert res.returncode == 255 and "Permission denied" in res.stderr
        for name in ("later", "ptyok"):
            with SSHTerminal(srv.ssh_argv(made[name], "-tt")) as t:
                t.expect(r"READY")
                t.send("q")
                assert t.wait_exit() == 0
        assert len(console_pids(srv.log)) == 2          # only the two keys allowed a terminal got a console
        wait_until(lambda: "expiry-time has passed" in srv.log.read_text(), what="the expiry in the log")


def test_options_that_cannot_be_enforced_refuse_that_key_at_load_with_a_line(keys):
    tunnel = make_key(keys["dir"] / "tunnel")
    ok = (keys["dir"] / "operator.pub").read_text().strip()
    _access_with(keys, [ok, f'tunnel="1" {(keys["dir"] / "tunnel.pub").read_text().strip()}',
                        f"cert-authority {ok}"])
    with standin_server(keys) as srv:
        assert _ssh(srv, tunnel).returncode == 255
        text = srv.log.read_text() + srv.stderr()
    assert f"{keys['access']} line 2: refused: option tunnel cannot be enforced" in text
    assert f"{keys['access']} line 3: refused: option cert-authority cannot be enforced" in text


def test_the_access_list_is_reread_when_replaced_with_the_same_size_and_mtime(keys):
    other = make_key(keys["dir"] / "other")
    old_line = (keys["dir"] / "operator.pub").read_text().replace("operator", "OPERATOR")
    new_line = (keys["dir"] / "other.pub").read_text().replace("other", "OTHER1!!")   # same length
    assert len(old_line) == len(new_line)
    _access_with(keys, [old_line.strip()])
    with standin_server(keys) as srv:
        st = keys["access"].stat()
        keys["access"].write_text(new_line)                    # `cp -p`, `rsync -t`, `touch -r`: same mtime
        os.utime(keys["access"], ns=(st.st_atime_ns, st.st_mtime_ns))
        assert keys["access"].stat().st_mtime_ns == st.st_mtime_ns and keys["access"].stat().st_size == st.st_size
        assert _ssh(srv, keys["key"]).returncode == 255       # removed: refused at once
        with SSHTerminal(srv.ssh_argv(other, "-tt")) as t:
            t.expect(r"READY")
            t.send("q")
            assert t.wait_exit() == 0


def test_a_group_or_world_writable_access_list_is_refused(keys):
    keys["access"].chmod(0o666)
    with pytest.raises(AssertionError, match="writable by group or others"), standin_server(keys):
        pass
    keys["access"].chmod(0o600)
    with standin_server(keys) as srv:
        keys["access"].chmod(0o646)                            # at runtime: nobody is admitted, and it is said
        assert _ssh(srv, keys["key"]).returncode == 255
        wait_until(lambda: "the access list cannot be used" in srv.log.read_text(), what="the report")
        keys["access"].chmod(0o600)
        with SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as t:
            t.expect(r"READY")
            t.send("q")
            assert t.wait_exit() == 0


async def test_a_nodes_private_key_readable_by_others_is_refused_naming_it(tmp_path):
    key = make_key(tmp_path / "node_key")
    key.chmod(0o644)
    assert "chmod 600" in (private_key_problem(str(key)) or "")
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    pool = SSHPool([NodeSpec("n1", "198.18.0.1", key=str(key), known_hosts=str(kh))])
    with pytest.raises(AuthError, match=re.escape(str(key))):
        await pool.connection("n1")
    key.chmod(0o600)
    assert private_key_problem(str(key)) is None
    await pool.close()


# --- pre-authentication exhaustion, attempts, sessions --------------------------------------------------------
def _stalled(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Read (the server's banner) until the server closes the connection or ``timeout`` passes."""
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not s.recv(4096):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_stalled_connections_are_capped_per_address_and_a_real_login_still_works(keys):
    with standin_server(keys, "--max-startups", "32:8") as srv:
        socks = [_stalled(srv.port, "127.0.0.2") for _ in range(40)]
        try:
            closed = [_closed_by_server(s, 0.5) for s in socks[8:]]
            assert all(closed), f"{closed.count(False)} connections over the cap were held"
            t0 = time.monotonic()
            with SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as t:    # the operator, from 127.0.0.1
                t.expect(r"READY")
                t.send("q")
                assert t.wait_exit() == 0
            assert all(_closed_by_server(s, 20) for s in socks[:8])      # the login timeout ends the held ones
            assert time.monotonic() - t0 < 20
        finally:
            for s in socks:
                s.close()
        refusals = [line for line in _log_lines(srv) if line.get("reason") == "startups"]
        assert 1 <= len(refusals) <= 2                                   # rate-limited, not one line each
        assert len(_log_lines(srv)) < 20                                 # and no other line per refused one


async def test_at_most_six_keys_may_fail_on_one_connection(keys):
    wrong = [str(make_key(keys["dir"] / f"wrong{i}")) for i in range(7)]
    with standin_server(keys) as srv:
        opts = dict(username="op", known_hosts=str(srv.known_hosts), agent_path=None)
        with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError, ConnectionError)):
            conn = await asyncssh.connect("127.0.0.1", srv.port, client_keys=[*wrong, str(keys["key"])], **opts)
            conn.close()
        conn = await asyncssh.connect("127.0.0.1", srv.port, client_keys=[*wrong[:5], str(keys["key"])], **opts)
        conn.close()
    assert "too many keys refused (at most 6)" in srv.log.read_text()


def test_one_key_holds_at_most_its_share_of_sessions_and_idles_out(keys):
    with standin_server(keys, "--max-sessions-per-key", "1", "--idle-timeout", "2") as srv, \
            SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as first:
        first.expect(r"READY")
        with SSHTerminal(srv.ssh_argv(keys["key"], "-tt")) as second:
            second.expect(r"already has 1 console sessions open")
            assert second.wait_exit() == 1
        first.expect(r"no input for 2 s: session closed", timeout=15)
        first.wait_exit()


# --- the pty and the console's memory ---------------------------------------------------------------------
async def test_a_huge_pty_is_clamped_at_start_and_on_resize_and_the_console_has_a_memory_limit(keys):
    with standin_server(keys, "--console-memory", "512") as srv:
        conn, proc = await _asyncssh_console(srv, keys["key"], size=(65535, 65535))
        await _read_until(proc, rb"SIZE 1000x500")
        pid = console_pids(srv.log)[0]
        assert window_size_of(pid) == (1000, 500)
        proc.change_terminal_size(60000, 4)
        await _read_until(proc, rb"SIZE 1000x4")
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert re.search(r"Max address space\s+536870912\s+536870912", limits), limits
        proc.stdin.write(b"q")
        await proc.wait(timeout=15)
        conn.close()


# --- the access log -------------------------------------------------------------------------------------------
def _kexinit(kex: bytes) -> bytes:
    def name_list(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b
    payload = (bytes([20]) + os.urandom(16) + name_list(kex) + name_list(b"ssh-ed25519")
               + name_list(b"aes128-ctr") * 2 + name_list(b"hmac-sha2-256") * 2 + name_list(b"none") * 2
               + name_list(b"") * 2 + b"\x00" + b"\x00\x00\x00\x00")
    pad = 8 - (len(payload) + 5) % 8 + 8
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + b"\x00" * pad


async def test_the_access_log_cannot_be_forged(keys):
    forged = b'x\n{"time": "2026", "level": "INFO", "msg": "ADMITTED peer=6.6.6.6 user=root"}\n\x1b]0;t\x07\x1b[2J'
    with standin_server(keys) as srv:
        s = _stalled(srv.port, "127.0.0.1")
        s.sendall(b"SSH-2.0-evil\r\n" + _kexinit(forged + b"," + b"k" * 30000))
        assert _closed_by_server(s, 15)
        s.close()
        conn, proc = await asyncio.wait_for(_asyncssh_console_as(srv, keys["key"], "op",
                                                                 term="x" * 30000 + forged.decode()), 20)
        await _read_until(proc, rb"READY")
        proc.stdin.write(b"q")
        await proc.wait(timeout=15)
        conn.close()
        wait_until(lambda: "disconnected" in srv.log.read_text(), what="the session's end in the log")
    raw = srv.log.read_bytes()
    assert b"\x1b" not in raw and b"\x07" not in raw
    lines = _log_lines(srv)
    assert all(len(json.dumps(line)) < 4096 for line in lines)
    admitted = [line for line in lines if str(line.get("msg", "")).startswith("ADMITTED")]
    assert len(admitted) == 1 and "6.6.6.6" not in str(admitted[0].get("peer"))


async def _asyncssh_console_as(srv, key: Path, user: str, term: str):
    conn = await asyncssh.connect("127.0.0.1", srv.port, username=user, client_keys=[str(key)],
                                  known_hosts=str(srv.known_hosts), agent_path=None)
    proc = await conn.create_process(term_type=term, term_size=(80, 24), encoding=None)
    return conn, proc


# --- host key and algorithms -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dangling", [True, False])
def test_a_symlinked_host_key_is_refused_with_a_sentence(keys, dangling):
    target = keys["dir"] / "real_key"
    if not dangling:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(target)], check=True)
    link = keys["dir"] / "host_key"
    link.symlink_to(target)
    with pytest.raises(AssertionError) as e, standin_server(keys):
        pass
    assert "is a symbolic link" in str(e.value) and "RecursionError" not in str(e.value)
    assert dangling is not target.exists()


@pytest.mark.parametrize("options", [("-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1"),
                                     ("-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1-etm@openssh.com"),
                                     ("-o", "KexAlgorithms=diffie-hellman-group14-sha1"),
                                     ("-o", "KexAlgorithms=diffie-hellman-group-exchange-sha1"),
                                     ("-o", "Ciphers=3des-cbc"), ("-o", "HostKeyAlgorithms=ssh-dss")])
def test_sha1_and_old_algorithms_are_refused(keys, options):
    with standin_server(keys) as srv:
        assert _ssh(srv, keys["key"], "-o", "Ciphers=aes128-ctr").returncode == 1   # negotiated: the no-terminal line
        res = _ssh(srv, keys["key"], *options)
    assert res.returncode == 255, res.stderr        # no algorithm in common: the connection never opens


def test_an_rsa_key_signs_with_sha2_only(keys):
    rsa = keys["dir"] / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(rsa)], check=True)
    _access_with(keys, [(keys["dir"] / "rsa.pub").read_text().strip()])
    with standin_server(keys) as srv:
        sha1 = _ssh(srv, rsa, "-o", "PubkeyAcceptedAlgorithms=ssh-rsa")
        assert sha1.returncode == 255 and "Permission denied" in sha1.stderr
        with SSHTerminal(srv.ssh_argv(rsa, "-tt", "-o", "PubkeyAcceptedAlgorithms=rsa-sha2-256")) as t:
            t.expect(r"READY")
            t.send("q")
            assert t.wait_exit() == 0


def test_accept_errors_are_rate_limited(caplog):
    """79,147 "Too many open files" tracebacks in a minute: now one line per 10 s, with the count left out."""
    import errno
    import logging

    from core.serve.accesslog import ErrorGate, install_loop_error_gate

    loop = asyncio.new_event_loop()
    try:
        install_loop_error_gate(loop, ErrorGate(every=10.0))
        with caplog.at_level(logging.ERROR, logger="overlay_tui.serve"):
            for _ in range(1000):
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": OSError(errno.EMFILE, "Too many open files")})
    finally:
        loop.close()
    lines = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    assert len(lines) == 1
