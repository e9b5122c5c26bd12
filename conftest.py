"""Session set-up for every pytest run, notebooks included.

nbval starts each notebook's kernel from this process's environment, so the variables set here
reach the kernels: run folders go to a temporary outputs root (never the checkout's outputs/),
and finished local tunings are shared through a cache that lives for this session only (a
notebook run alone re-attaches to a tuning an earlier notebook made instead of repeating it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
_SESSION_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    base = Path(tempfile.mkdtemp(prefix="routerlib-tests-"))
    config.stash[_SESSION_DIR] = base
    os.environ["ROUTERLIB_OUTPUTS"] = str(base / "outputs")
    if os.environ.get("ROUTERLIB_TUNING_CACHE", "").strip().lower() not in {"off", "0", "no"}:
        os.environ["ROUTERLIB_TUNING_CACHE"] = str(base / "tuning-cache")  # "off" stays off
    os.environ.setdefault("ROUTERLIB_CACHE", str(ROOT / ".cache"))
    os.environ.setdefault("ROUTERLIB_ROOT", str(ROOT))


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_SESSION_DIR, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
