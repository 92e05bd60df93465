"""`overlay-tui capture --read FILE [--json] [--flows]`: lines, JSON shapes, flows, counts, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.capture.decode import VxlanDecoder
from core.capture.format import frame_line
from core.capture.pcap import iter_pcap
from core.cli.capture import read_file
from core.cli.main import main
from core.model import Names
from tests.vxlan_frames import inner_frame, mixed_frames, vxlan, write_mixed_pcap

ROOT = Path(__file__).resolve().parents[1]
FRAME_KEYS = {"node", "outer_src", "outer_dst", "vni", "network", "inner_src", "inner_dst", "proto", "length"}
FLOW_KEYS = {"vni", "inner_src", "inner_dst", "proto", "packets", "bytes"}
N = len(mixed_frames())


@pytest.fixture
def pcap(tmp_path) -> Path:
    path = tmp_path / "mixed.pcap"
    write_mixed_pcap(path, repeat=2)
    return path


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["capture", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_read_prints_one_line_per_frame_with_every_field(capsys, pcap):
    rc, out, err = _run(capsys, "--read", str(pcap))
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 2 * N
    assert lines[0] == ("22:13:20.000000 - 198.18.0.1 > 198.18.0.2 vni 256 10.0.0.2 > 10.0.0.3 "
                        "ICMP echo request len 42")
    assert "2001:db8::1 > 2001:db8::2 vni 4097" in lines[2]
    assert any("MALFORMED" in ln and "!inner IPv4 header cut short" in ln for ln in lines)
    assert f"{2 * N} frames" in err and "14 malformed, 8 not VXLAN" in err


def test_read_json_is_one_object_per_frame_with_the_documented_keys(capsys, pcap):
    rc, out, _ = _run(capsys, "--read", str(pcap), "--json")
    objs = [json.loads(ln) for ln in out.splitlines()]
    assert rc == 0 and len(objs) == 2 * N
    assert all(o.keys() >= FRAME_KEYS for o in objs)
    first = objs[0]
    assert {k: first[k] for k in FRAME_KEYS} == {
        "node": "", "outer_src": "198.18.0.1", "outer_dst": "198.18.0.2", "vni": 256, "network": None,
        "inner_src": "10.0.0.2", "inner_dst": "10.0.0.3", "proto": "ICMP", "length": 42}
    assert sum(o["proto"] == "NOT-VXLAN" for o in objs) == 8


def test_read_flows_table_and_json_agree_with_the_frames(capsys, pcap):
    rc, out, err = _run(capsys, "--read", str(pcap), "--flows")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["VNI", "NETWORK", "INNER", "SRC", "INNER", "DST", "PROTO", "PACKETS",
                                            "BYTES", "PPS", "BPS"]
    assert any(ln.split()[:5] == ["256", "-", "10.0.0.2", "10.0.0.3", "ICMP"] for ln in lines)
    rc, out, _ = _run(capsys, "--read", str(pcap), "--flows", "--json")
    flows = [json.loads(ln) for ln in out.splitlines()]
    assert rc == 0 and all(f.keys() >= FLOW_KEYS for f in flows)
    assert sum(f["packets"] for f in flows) == 2 * N
    icmp = [f for f in flows if (f["vni"], f["inner_src"], f["inner_dst"], f["proto"]) ==
            (256, "10.0.0.2", "10.0.0.3", "ICMP")]
    assert icmp[0]["packets"] == 2 and icmp[0]["bytes"] == 2 * 42
    assert len(lines) - 1 == len(flows)


def test_flows_with_count_use_the_per_frame_path_and_agree(capsys, pcap):
    _, fast, _ = _run(capsys, "--read", str(pcap), "--flows", "--json")
    _, slow, _ = _run(capsys, "--read", str(pcap), "--flows", "--json", "--count", str(2 * N))
    assert fast == slow


def test_count_and_write_copy_frames_to_a_new_pcap(capsys, pcap, tmp_path):
    out_path = tmp_path / "first5.pcap"
    rc, out, _ = _run(capsys, "--read", str(pcap), "--count", "5", "--write", str(out_path))
    assert rc == 0 and len(out.splitlines()) == 5
    assert [r[3] for r in iter_pcap(out_path)] == mixed_frames()[:5]


def test_vxlan_port_option(capsys, tmp_path):
    path = tmp_path / "p8472.pcap"
    from core.capture.pcap import PcapWriter
    with PcapWriter(path) as w:
        w.write(1.0, vxlan(inner_frame("icmp"), vni=42, port=8472))
    for extra in ([], ["--flows"]):
        _, out, err = _run(capsys, "--read", str(path), "--json", *extra)
        assert json.loads(out)["proto"] == "NOT-VXLAN"
        assert "warning: 1 frames are UDP to port 8472, a VXLAN port (Linux's default), not to 4789: " \
               "try --vxlan-port 8472" in err
    _, out, _ = _run(capsys, "--read", str(path), "--json", "--vxlan-port", "8472")
    assert json.loads(out)["vni"] == 42


def test_names_show_next_to_raw_values(pcap):
    names = Names(networks={256: "demo"}, containers={"10.0.0.2": "c1@node1"}, nodes={"198.18.0.1": "node1"})
    f = VxlanDecoder().decode(next(iter(iter_pcap(pcap)))[3], 0.0)
    assert frame_line(f, names) == ("00:00:00.000000 - 198.18.0.1(node1) > 198.18.0.2 vni 256 (demo) "
                                    "10.0.0.2(c1@node1) > 10.0.0.3 ICMP echo request len 42")

    class Out(list):
        write = list.append

        def writelines(self, lines):
            self.extend(lines)

    args = type("A", (), {"read": str(pcap), "vxlan_port": None, "flows": True, "write": None, "count": None,
                          "json": True})()
    out = Out()
    read_file(args, out, Out(), names)
    assert any(json.loads(s)["network"] == "demo" and json.loads(s)["src_name"] == "c1@node1" for s in out)


def test_truncated_file_still_prints_and_warns(capsys, pcap):
    pcap.write_bytes(pcap.read_bytes()[:-3])
    for extra in ([], ["--flows"]):
        rc, out, err = _run(capsys, "--read", str(pcap), *extra)
        assert rc == 0 and "warning:" in err and "last record cut short" in err


@pytest.mark.parametrize("make,expect,rc", [
    (lambda p: None, "no such file", 1),
    (lambda p: p.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(60)), "is not a pcapng file", 2),
    (lambda p: p.write_bytes(b"hello world, not a capture"), "is not a pcap or pcapng file", 2),
    (lambda p: p.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage, not deflate"), "cannot read", 1),
])
def test_bad_files_give_one_line_and_a_non_zero_exit_without_traceback(tmp_path, make, expect, rc):
    path = tmp_path / "in.pcap"
    make(path)
    for extra in ([], ["--flows"], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "tui.launcher", "capture", "--read", str(path), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == rc and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and expect in proc.stderr and str(path) in proc.stderr
        assert "Traceback" not in proc.stderr



@pytest.mark.parametrize("argv,expect", [
    ([], "capture needs --read FILE or --node NAME"),
    (["--read", "x.pcap", "--seconds", "3"], "--seconds applies to live capture"),
    (["--read", "x.pcap", "--count", "0"], "--count must be at least 1"),
    (["--read", "x.pcap", "--vxlan-port", "70000"], "is not a UDP port"),
])
def test_usage_errors(capsys, argv, expect):
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and expect in err and out == ""


def test_read_needs_no_inventory_and_a_closed_pipe_is_quiet(pcap, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OVERLAY_TUI_STATE": str(tmp_path / "empty-state")}
    proc = subprocess.run(f"{sys.executable} -m tui.launcher capture --read {pcap} | head -1", shell=True,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.stdout.startswith("22:13:20.000000 - 198.18.0.1 > 198.18.0.2 vni 256")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_read_names_without_an_inventory_is_bad_input(tmp_path, pcap):
    env = {**__import__("os").environ, "OVERLAY_TUI_INVENTORY": str(tmp_path / "missing.toml")}
    proc = subprocess.run([sys.executable, "-m", "tui.launcher", "capture", "--read", str(pcap), "--names"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and proc.stdout == "" and "missing.toml" in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("extra", [["--flows", "--json"], ["--json"], ["--flows"], []])
def test_the_program_ends_without_teardown_yet_writes_everything(capsys, tmp_path, extra):
    """`capture --read` as the program (``-m tui.launcher``) ends with os._exit once its output is written
    (core/cli/quick_exit.py): stdout (to a file and to a pipe) and stderr are whole, the exit status 0."""
    path = tmp_path / "many.pcap"
    write_mixed_pcap(path, repeat=300)
    rc, want_out, want_err = _run(capsys, "--read", str(path), *extra)
    assert rc == 0
    argv = [sys.executable, "-m", "tui.launcher", "capture", "--read", str(path), *extra]
    out_file = tmp_path / "out.txt"
    with open(out_file, "w") as fh:
        to_file = subprocess.run(argv, cwd=ROOT, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=120)
    to_pipe = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert to_file.returncode == 0 and to_pipe.returncode == 0
    assert out_file.read_text() == want_out and to_pipe.stdout == want_out
    assert to_file.stderr == want_err and to_pipe.stderr == want_err
