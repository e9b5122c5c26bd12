"""Session set-up for every pytest run, notebooks included.

nbval starts each notebook's kernel from this process's environment, so the variables set here
reach the kernels: run folders go to a temporary outputs root (never the checkout's outputs/),
and finished local tunings are shared through a cache that lives for this session only (a
notebook run alone re-attaches to a tuning an earlier notebook made instead of repeating it).

The notebooks open ``$ROUTERLIB_PARAMS`` when their ``params_file`` parameter is empty (their
default), so nbval runs each of them alone on the smallest params, tests/data/e2e_tiny.yaml, the
same run the end-to-end test makes through papermill: their tunings re-attach to its. ``make run``
and benchmarks/bench_make_run.py run the notebooks on params/local.yaml, the full default.

Under pytest-xdist (``make test`` runs three workers) the workers share the controller's session
folder, and the notebooks and the end-to-end test form one unit of work that runs first, in
order, on one worker, so the notebooks find the end-to-end run's tunings in the cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
_SESSION_DIR = pytest.StashKey[Path]()
#: Set by the process that made the session folder; xdist workers inherit it and reuse the folder.
_SESSION_ENV = "ROUTERLIB_TEST_SESSION"
#: Test files that run in the pipeline group, before the notebooks (see the module docstring).
PIPELINE_FILES = ("tests/test_pipeline_e2e.py",)
PIPELINE_GROUP = "pipeline"


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A run started in the background (`make test &`) inherits Ctrl-C ignored, and Python
        # then leaves it ignored: the tests that press Ctrl-C (in this process or in the
        # commands they start) would wait for ever. They get Python's own handler back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    inherited = os.environ.get(_SESSION_ENV, "")
    if inherited and os.environ.get("PYTEST_XDIST_WORKER"):
        base = Path(inherited)  # a worker: the controller owns (and removes) the folder
    else:
        base = Path(tempfile.mkdtemp(prefix="routerlib-tests-"))
        os.environ[_SESSION_ENV] = str(base)
        config.stash[_SESSION_DIR] = base
    os.environ["ROUTERLIB_OUTPUTS"] = str(base / "outputs")
    if os.environ.get("ROUTERLIB_TUNING_CACHE", "").strip().lower() not in {"off", "0", "no"}:
        os.environ["ROUTERLIB_TUNING_CACHE"] = str(base / "tuning-cache")  # "off" stays off
    os.environ.setdefault("ROUTERLIB_CACHE", str(ROOT / ".cache"))
    os.environ.setdefault("ROUTERLIB_ROOT", str(ROOT))
    os.environ["ROUTERLIB_PARAMS"] = str(ROOT / "tests" / "data" / "e2e_tiny.yaml")


def _in_pipeline_group(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path.startswith("notebooks/") or path in PIPELINE_FILES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The pipeline group first (end-to-end test, then notebooks 01–05 in order), then the tests
    marked slow, then the rest, each in collection order: under xdist the long tests start
    early instead of one of them running alone at the end."""
    group = [item for item in items if _in_pipeline_group(item.nodeid)]
    rest = [item for item in items if not _in_pipeline_group(item.nodeid)]
    slow = [item for item in rest if item.get_closest_marker("slow")]
    items[:] = group + slow + [item for item in rest if not item.get_closest_marker("slow")]


if importlib.util.find_spec("xdist") is not None:  # a dev dependency; plain pytest works without

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        """Every test is its own unit of work except the pipeline group, which is one unit, run
        in order on one worker. (xdist's own ``--dist loadgroup`` renames node ids, which
        pytest 9 no longer lets it do.)"""
        from xdist.scheduler import LoadScopeScheduling

        class PipelineGroupScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return PIPELINE_GROUP if _in_pipeline_group(nodeid) else nodeid

        return PipelineGroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_SESSION_DIR, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
