"""Fixtures shared by every test. Concern-specific fixtures live in tests/support/.

The session-wide environment (temporary outputs root, session tuning cache) is set up by the
conftest.py at the project root, so it also reaches the notebook kernels nbval starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The team's own real router rows (MIT), copied into the repository: see tests/data/README.md.
REAL_DATA = ROOT / "tests" / "data" / "coursegpt_router"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """tests/data/coursegpt_router: the real benchmark rows, Week-2 source rows and gates."""
    return REAL_DATA


@pytest.fixture(scope="session")
def session_tuning_cache() -> str:
    """The tuning cache shared by this pytest session (set by the root conftest.py)."""
    return os.environ["ROUTERLIB_TUNING_CACHE"]


@pytest.fixture
def tuning_cache(session_tuning_cache: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Opt a test into the session's tuning cache (tests run with it off by default, so a test of
    the training mechanics always trains)."""
    monkeypatch.setenv("ROUTERLIB_TUNING_CACHE", session_tuning_cache)
    return session_tuning_cache


@pytest.fixture(autouse=True)
def _isolated_outputs(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    session_tuning_cache: str,
) -> None:
    """Every test writes run folders and registries to its own outputs root, never outputs/."""
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path_factory.mktemp("outputs")))
    monkeypatch.setenv("ROUTERLIB_ROOT", str(ROOT))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("ROUTERLIB_TUNING_CACHE", "off")
    os.environ.setdefault("ROUTERLIB_CACHE", str(ROOT / ".cache"))
