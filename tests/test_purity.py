"""The core is pure: no clock, no I/O, no threads, nothing from the shell. Enforced, not hoped for."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "logmond" / "core"
# Modules that reach the world: the clock, files and processes, sockets, threads, the database.
FORBIDDEN = {"os", "time", "socket", "asyncio", "select", "selectors", "signal", "subprocess", "threading",
             "sqlite3", "multiprocessing", "shutil", "tempfile", "io", "pyinotify", "psutil", "curses"}


def imported(path: Path) -> set[str]:
    """Every module a file imports, absolute names, `from x import y` as both x and x.y."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def impurities(names: set[str]) -> list[str]:
    bad = []
    for name in sorted(names):
        top = name.split(".")[0]
        if top in FORBIDDEN:
            bad.append(name)
        # The package root (which holds only the version) and the core itself are allowed.
        elif top == "logmond" and name not in ("logmond", "logmond.__version__") \
                and not name.startswith("logmond.core"):
            bad.append(name)
    return bad


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_impure(path: Path) -> None:
    assert impurities(imported(path)) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import time\nfrom os import path\nfrom logmond.tail import Follower\nfrom logmond.core import parse\n")
    assert impurities(imported(probe)) == ["logmond.tail", "logmond.tail.Follower", "os", "os.path", "time"]


def test_core_has_its_modules() -> None:
    assert {"parse.py", "batch.py", "window.py", "alerts.py", "monitor.py", "linebuffer.py",
            "replies.py"} <= {p.name for p in CORE.glob("*.py")}
