"""Files a console user or a command names: private, never through a link, never over a file unasked, and confined
to the session's own directory in a served console (read-only: nothing at all). Issue 10, High 1."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core.access import WriteGuard
from core.capture.pcap import read_pcap_frames
from core.errors import ReadOnlyError, UsageError
from core.files import FileWriteError, SaveArea, create_private, name_problem
from core.recorded.service import RecordedService
from tests.capture_fixture import FIXTURE

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "tests" / "fixtures" / "lab_state.json"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- create_private ---------------------------------------------------------------------------------------
def test_a_new_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with create_private(tmp_path / "a.pcap") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.pcap") == 0o600 and (tmp_path / "a.pcap").read_bytes() == b"x"


def test_an_existing_file_is_never_truncated_without_replace(tmp_path):
    keep = tmp_path / "authorized_keys"
    keep.write_text("ssh-ed25519 AAAA keep\n")
    with pytest.raises(FileWriteError, match="already exists"):
        create_private(keep)
    assert keep.read_text() == "ssh-ed25519 AAAA keep\n"


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_at_the_final_component_is_never_followed(tmp_path, replace, dangling):
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_text("precious")
    link = tmp_path / "out.pcap"
    link.symlink_to(victim)
    with pytest.raises(FileWriteError, match="symbolic link"):
        create_private(link, replace=replace)
    assert link.is_symlink()
    assert (victim.read_text() == "precious") if not dangling else not victim.exists()


def test_replace_swaps_the_whole_file_atomically_and_an_abort_keeps_the_old_one(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"old")
    p.chmod(0o644)
    f = create_private(p, replace=True)
    f.write(b"half")
    assert p.read_bytes() == b"old"              # nothing changes until the new file is complete
    f.abort()
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.pcap"]
    with create_private(p, replace=True) as f:
        f.write(b"new")
    assert p.read_bytes() == b"new" and _mode(p) == 0o600 and os.listdir(tmp_path) == ["x.pcap"]


def test_replace_refuses_a_directory_or_a_device(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(FileWriteError, match="directory"):
        create_private(tmp_path / "d", replace=True)
    with pytest.raises(FileWriteError, match="not a regular file"):
        create_private("/dev/null", replace=True)


# --- where a console may save ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/root/.ssh/authorized_keys", "../x.pcap", "..", "a/b", "x\x00y", "-rf",
                                  ".bashrc", "", "a\x1b]0;t\x07"])
def test_a_served_console_takes_a_bare_file_name_only(tmp_path, name):
    area = SaveArea(WriteGuard(), "s1", tmp_path)
    assert name_problem(name)
    with pytest.raises(UsageError):
        area.target(name)
    with pytest.raises(UsageError):
        area.open(name)
    assert not (tmp_path / "s1").exists() or not any((tmp_path / "s1").iterdir())


def test_a_served_console_saves_in_its_session_directory_and_says_how_to_fetch(tmp_path):
    area = SaveArea(WriteGuard(), "20261130T030000Z-abcd", tmp_path / "sessions")
    target = area.target("cap.pcap")
    d = tmp_path / "sessions" / "20261130T030000Z-abcd"
    assert target.served and target.path == str(d / "cap.pcap") and not target.exists
    assert target.fetch and target.fetch.startswith("scp ") and str(d / "cap.pcap") in target.fetch
    with area.open("cap.pcap") as f:
        f.write(b"x")
    assert _mode(d) == 0o700 and _mode(d / "cap.pcap") == 0o600
    assert area.target("cap.pcap").exists


@pytest.mark.parametrize("session", [None, "s1"])
def test_a_read_only_console_saves_nothing(tmp_path, session):
    area = SaveArea(WriteGuard(read_only=True), session, tmp_path)
    with pytest.raises(ReadOnlyError, match="read-only"):
        area.target("cap.pcap")
    with pytest.raises(ReadOnlyError):
        area.open("cap.pcap")
    assert list(tmp_path.iterdir()) == []


# --- through the Service API (the rule lives in core, not in the modal) -----------------------------------
async def test_the_service_refuses_a_read_only_save(tmp_path):
    svc = RecordedService.load(STATE, read_only=True)
    frames = list(read_pcap_frames(FIXTURE))[:3]
    with pytest.raises(ReadOnlyError):
        await svc.save_pcap(frames, str(tmp_path / "x.pcap"))
    assert not (tmp_path / "x.pcap").exists()


async def test_the_served_service_confines_saves(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLAY_TUI_STATE", str(tmp_path / "state"))
    svc = RecordedService.load(STATE, served_session="sess-1")
    frames = list(read_pcap_frames(FIXTURE))[:3]
    victim = tmp_path / "authorized_keys"
    victim.write_text("keep\n")
    for bad in (str(victim), "../../authorized_keys", "../sess-2/x.pcap"):
        with pytest.raises(UsageError):
            await svc.save_pcap(frames, bad, replace=True)
    assert victim.read_text() == "keep\n"
    assert await svc.save_pcap(frames, "ok.pcap") == 3
    saved = tmp_path / "state" / "serve" / "sessions" / "sess-1" / "ok.pcap"
    assert len(list(read_pcap_frames(saved))) == 3
    with pytest.raises(FileWriteError, match="already exists"):
        await svc.save_pcap(frames, "ok.pcap")
    assert await svc.save_pcap(frames[:1], "ok.pcap", replace=True) == 1


# --- the commands that write files -----------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.launcher", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_capture_write_never_clobbers_and_replace_does_it_atomically(tmp_path):
    out = tmp_path / "out.pcap"
    out.write_text("precious")
    proc = _cli("capture", "--read", str(FIXTURE), "--count", "2", "--write", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr and out.read_text() == "precious"
    link = tmp_path / "link.pcap"
    link.symlink_to(tmp_path / "elsewhere")
    proc = _cli("capture", "--read", str(FIXTURE), "--count", "2", "--write", str(link))
    assert proc.returncode == 2 and "symbolic link" in proc.stderr and not (tmp_path / "elsewhere").exists()
    proc = _cli("capture", "--read", str(FIXTURE), "--count", "2", "--write", str(out), "--replace")
    assert proc.returncode == 0, proc.stderr
    assert len(list(read_pcap_frames(out))) == 2 and _mode(out) == 0o600


def test_record_refuses_an_existing_out_before_recording(tmp_path):
    out = tmp_path / "state.json"
    out.write_text("{}")
    proc = _cli("--inventory", str(tmp_path / "none.toml"), "record", "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--replace" in proc.stderr
    assert out.read_text() == "{}"


# --- the console's `w` -----------------------------------------------------------------------------------
async def test_the_console_of_a_read_only_session_says_it_cannot_save(tmp_path):
    from tests.test_tui_capture import SIZE, CaptureHost, start_recorded
    from tui.modals.save_pcap import SavePcapModal

    app = CaptureHost(RecordedService.load(STATE, read_only=True, served_session="ro-1"))
    notes: list[str] = []
    app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await start_recorded(pilot)
        await pilot.press("w")
        await pilot.pause()
        assert not isinstance(app.screen, SavePcapModal)
        assert any("read-only" in n for n in notes), notes


async def test_the_served_console_saves_in_its_directory_and_shows_the_path_and_fetch_line(tmp_path, monkeypatch):
    from textual.widgets import Input

    from tests.test_tui_capture import SIZE, CaptureHost, start_recorded, until
    from tui.modals.save_pcap import SavePcapModal

    monkeypatch.setenv("OVERLAY_TUI_STATE", str(tmp_path))
    app = CaptureHost(RecordedService.load(STATE, served_session="web-7"))
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_recorded(pilot)
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, SavePcapModal), "the save modal")
        where = str(app.screen.query_one(".save-pcap-where").render())
        assert "serving host" in where and "web-7" in where
        for bad in ("/tmp/evil.pcap", "../evil.pcap", "-x.pcap"):
            app.screen.query_one(Input).value = bad
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, SavePcapModal)
            assert str(app.screen.query_one(".save-pcap-error").render())
        app.screen.query_one(Input).value = "mine.pcap"
        await pilot.press("enter")
        await until(pilot, lambda: "saved" in pane.note, "the save")
        saved = tmp_path / "serve" / "sessions" / "web-7" / "mine.pcap"
        assert str(saved) in pane.note and "scp " in pane.note
        assert saved.exists() and not (tmp_path / "evil.pcap").exists() and not Path("/tmp/evil.pcap").exists()
