"""The layering rule: core never loads textual or rich; tui never imports an SDK."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_TUI = {"asyncssh", "docker", "etcd3", "scapy", "grpc"}
FORBIDDEN_IN_CORE = {"textual", "rich"}


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_core_source_never_imports_textual_or_rich():
    bad = [(f, m) for f, m in _imports("core") if m in FORBIDDEN_IN_CORE]
    assert not bad, f"core imports the UI toolkit: {bad}"


def test_tui_source_never_imports_an_sdk():
    bad = [(f, m) for f, m in _imports("tui") if m in FORBIDDEN_IN_TUI]
    assert not bad, f"tui imports an SDK: {bad}"


def test_importing_every_core_module_loads_no_textual_or_rich():
    mods = sorted("core." + p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core loaded: {out.stdout.strip()}"


def test_importing_the_console_loads_no_sdk():
    code = ("import sys, tui.app\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{tuple(sorted(FORBIDDEN_IN_TUI))!r})\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the console loaded SDKs: {out.stdout.strip()}"
