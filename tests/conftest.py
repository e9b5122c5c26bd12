"""Fixtures shared by every test. Concern-specific fixtures live in tests/support/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "coursegpt_router"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data/coursegpt_router (CI always has it beside the clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_outputs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test writes run folders and registries to its own outputs root, never outputs/."""
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path_factory.mktemp("outputs")))
    monkeypatch.setenv("ROUTERLIB_ROOT", str(ROOT))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    os.environ.setdefault("ROUTERLIB_CACHE", str(ROOT / ".cache"))
