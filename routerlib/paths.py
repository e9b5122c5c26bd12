"""Where things live: the project root, the outputs root (ROUTERLIB_OUTPUTS) and run folders."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import time
from pathlib import Path


def project_root() -> Path:
    """The checkout holding notebooks/ and params/: ROUTERLIB_ROOT, else the nearest parent of
    the working folder with both, else the folder above the installed package."""
    env = os.environ.get("ROUTERLIB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params").is_dir() and (candidate / "notebooks").is_dir():
            return candidate
    return Path(__file__).resolve().parent.parent


def packaged_file(name: str) -> Path:
    """A default file shipped inside the package, ``routerlib/data/<name>`` (thresholds.yaml,
    pricing.yaml, …), found the same way in a clone and in an installed wheel."""
    return Path(str(importlib.resources.files("routerlib").joinpath("data", name)))


def outputs_root() -> Path:
    """ROUTERLIB_OUTPUTS when set, else outputs/ under the project root."""
    env = os.environ.get("ROUTERLIB_OUTPUTS")
    return Path(env).resolve() if env else project_root() / "outputs"


def cache_root() -> Path:
    """Where built artifacts are cached: ROUTERLIB_CACHE or ~/.cache/routerlib, never the repo."""
    env = os.environ.get("ROUTERLIB_CACHE")
    return Path(env).resolve() if env else Path.home() / ".cache" / "routerlib"


def resolve(path: str | os.PathLike[str]) -> Path:
    """A user path: absolute as given, relative to the project root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """Create ``<outputs>/<name>-<YYYYmmdd-HHMMSS>`` (suffixed when taken) and return it."""
    base = root or outputs_root()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = base / (f"{slug}-{stamp}" + (f"-{attempt}" if attempt else ""))
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(parents=True)
            return candidate
    raise RuntimeError(f"could not create a run folder under {base}")
