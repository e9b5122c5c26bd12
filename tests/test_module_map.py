"""docs/architecture.md's module map lists every module of the package once, and nothing else;
every module imports on its own in a fresh interpreter (no hidden import order, no import
circle)."""

from __future__ import annotations

import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import routerlib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "routerlib"
MAP_PAGE = ROOT / "docs" / "architecture.md"
START, END = "<!-- module-map:start -->", "<!-- module-map:end -->"


def _module_files() -> set[str]:
    """Every .py file of the package, plus each data folder (no .py inside), as map paths."""
    files = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    folders = {
        p.relative_to(ROOT).as_posix() + "/"
        for p in PACKAGE.rglob("*")
        if p.is_dir() and p.name != "__pycache__" and not any(p.glob("*.py"))
    }
    return files | folders


def _map_entries() -> list[str]:
    text = MAP_PAGE.read_text(encoding="utf-8")
    assert START in text and END in text, "docs/architecture.md lost its module map markers"
    block = text.split(START, 1)[1].split(END, 1)[0]
    entries = []
    for line in block.strip().splitlines():
        match = re.fullmatch(r"- `([^`]+)` — \S.*", line)
        assert match, f"docs/architecture.md module map: not '- `path` — what it does': {line!r}"
        entries.append(match.group(1))
    return entries


def test_architecture_module_map_matches_the_files() -> None:
    entries = _map_entries()
    assert len(entries) == len(set(entries)), (
        "a module is listed twice in the module map (docs/architecture.md)"
    )
    files = _module_files()
    missing, stale = sorted(files - set(entries)), sorted(set(entries) - files)
    assert not missing and not stale, (
        f"docs/architecture.md module map: add a line for {missing}; remove the line for {stale}"
    )


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(routerlib.__path__, "routerlib."))


def test_every_module_file_is_an_importable_module() -> None:
    names = {n.removesuffix(".__init__") for n in _modules()}
    for path in PACKAGE.rglob("*.py"):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        assert dotted in names | {"routerlib"}, f"{path} is not reachable as a module"


def test_every_module_imports_in_isolation() -> None:
    """Each module imports in a process where no other routerlib module was loaded first
    (tests/support/import_each.py forks one per module); the CLI's __main__ runs as a command."""
    modules = [m for m in _modules() if not m.endswith(".__main__")]
    proc = _python(str(ROOT / "tests" / "support" / "import_each.py"), *modules)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout)
    assert not failures, "\n\n".join(f"import {m}:\n{tb[-1500:]}" for m, tb in failures.items())
    cli = _python("-m", "routerlib", "--help")
    assert cli.returncode == 0, cli.stderr[-3000:]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter run from the project root with the package on its path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
