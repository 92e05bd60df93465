"""The layering rule: core never loads textual or rich (nor tui); tui never imports an SDK.

Checked three ways: the source's import statements (every subpackage, also imports by string through
``importlib.import_module`` / ``__import__``), and what importing every module really loads.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_TUI = {"asyncssh", "docker", "etcd3", "scapy", "grpc"}
FORBIDDEN_IN_CORE = {"textual", "rich", "tui"}


def _modules(package: str) -> list[str]:
    out = []
    for p in sorted((ROOT / package).rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _string_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` or ``__import__("x")``, if a literal."""
    fn = node.func
    name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else None
    if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(where, a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((where, node.module.split(".")[0]))
            elif isinstance(node, ast.Call) and (mod := _string_import(node)):
                found.append((where, mod.split(".")[0]))
    return found


def test_the_source_scan_sees_subpackages_and_string_imports():
    assert any(f.startswith("core/cli/") for f, _ in _imports("core"))
    call = ast.parse("importlib.import_module('textual.app')").body[0].value     # type: ignore[attr-defined]
    assert _string_import(call) == "textual.app"


def test_core_source_never_imports_the_ui():
    bad = [(f, m) for f, m in _imports("core") if m in FORBIDDEN_IN_CORE]
    assert not bad, f"core imports the UI: {bad}"


def test_tui_source_never_imports_an_sdk():
    bad = [(f, m) for f, m in _imports("tui") if m in FORBIDDEN_IN_TUI]
    assert not bad, f"tui imports an SDK: {bad}"


def _loaded_after_importing(mods: list[str], forbidden: set[str]) -> str:
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(forbidden)!r})\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_every_core_module_loads_no_ui():
    mods = _modules("core")
    assert "core.cli.main" in mods and "core.etcd.service" in mods
    assert _loaded_after_importing(mods, FORBIDDEN_IN_CORE) == ""


def test_importing_every_tui_module_loads_no_sdk():
    mods = _modules("tui")
    assert "tui.capture.pane" in mods and "tui.screens.runbook" in mods
    assert _loaded_after_importing(mods, FORBIDDEN_IN_TUI) == ""
