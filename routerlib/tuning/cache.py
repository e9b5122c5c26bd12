"""A cache of finished local tunings under ``<cache>/tuning/<key>/``: the local backend is
deterministic, so a submission with the same key copies the entry instead of training again. The
key hashes the spec (not where it writes or its labels), the data and a local base model's bytes,
the backend options, the training code and the torch, transformers and peft versions.
``ROUTERLIB_TUNING_CACHE`` moves the cache or turns it off (``off``, ``0``, ``no``; docs/outputs.md).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib import metadata
from pathlib import Path
from typing import Any

from routerlib import paths, runfolder
from routerlib.atomic import atomic_folder, file_lock, write_text
from routerlib.checkpoint_names import CHECKPOINTS_DIR, FINAL_CHECKPOINT
from routerlib.models import EMBEDDED_MODEL, gguf_path
from routerlib.tinymodel import config_hash
from routerlib.tuning.base import TuningSpec

ENV = "ROUTERLIB_TUNING_CACHE"
OFF_VALUES = frozenset({"off", "0", "no", "false"})
#: Written into each entry: the key's inputs (for a reader wondering why two runs share it).
KEY_FILE = "cache_key.json"
#: What an entry copies from a tuning output folder (loss curve and checkpoints) beside its copy
#: of the finished Job (a runfolder.JOB_FILE).
ENTRY_ITEMS = (runfolder.LOSS_CURVE_FILE, CHECKPOINTS_DIR.partition("/")[0])
#: Spec fields that say how a tuning is labelled, not what it learns (nor a local job's identity).
NOT_LEARNED = {"labels", "tuned_model_display_name"}
#: ... and where it reads and writes (the data and a custom base are hashed by their contents).
NOT_IN_KEY = NOT_LEARNED | set(
    "output_uri training_dataset_uri validation_dataset_uri custom_base_model".split()
)
#: The modules whose source decides the trained weights: their files are hashed into the key
#: (found with importlib.util.find_spec, not imported).
TRAINING_MODULES = (
    "routerlib.tuning.trainer",
    "routerlib.tuning.model_io",
    "routerlib.tuning.examples",
    "routerlib.tinymodel",
)


def cache_dir() -> Path | None:
    """The cache folder, or None when ROUTERLIB_TUNING_CACHE turns it off."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in OFF_VALUES:
        return None
    return Path(env).expanduser().resolve() if env else paths.cache_root() / "tuning"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@functools.lru_cache(maxsize=8)
def _stat_digest(path: Path, size: int, mtime_ns: int) -> str:
    return file_digest(path)


def model_file_digest(path: Path) -> str:
    """sha256 of a model file (a GGUF base), read once per path, size and mtime: a submission
    needs it for its cache key and again for the de-quantized copy's folder."""
    stat = path.resolve().stat()
    return _stat_digest(path.resolve(), stat.st_size, stat.st_mtime_ns)


def library_version(name: str) -> str:
    """The installed version of package ``name``, or "absent"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def folder_digest(folder: Path) -> str:
    """sha256 over every file below ``folder``: relative path and contents, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(file_digest(file).encode("ascii"))
    return digest.hexdigest()


def code_files() -> list[Path]:
    """The source files of the training code (TRAINING_MODULES), found without importing them."""
    files = []
    for name in TRAINING_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name}: training code not found")  # an installation problem
        files.append(Path(spec.origin))
    return files


def _base_model(spec: TuningSpec) -> dict[str, str]:
    base = {"base_model": spec.base_model}
    gguf = gguf_path(spec.base_model)
    if spec.base_model == EMBEDDED_MODEL:
        base["embedded_build"] = config_hash()
    elif gguf is not None and gguf.is_file():
        base["base_model_contents"] = model_file_digest(gguf)
    elif Path(spec.base_model).expanduser().is_dir():
        base["base_model_contents"] = folder_digest(Path(spec.base_model).expanduser())
    if spec.custom_base_model:
        base["custom_base_model_contents"] = folder_digest(paths.resolve(spec.custom_base_model))
    return base


def key_inputs(spec: TuningSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Everything the key hashes (see the module docstring)."""
    files = {"train": spec.training_dataset_uri, "validation": spec.validation_dataset_uri}
    # the training code, and the libraries whose versions can change the weights
    code = hashlib.sha256(b"".join(file.read_bytes() for file in code_files())).hexdigest()
    versions = {name: library_version(name) for name in ("torch", "transformers", "peft")}
    return {
        "spec": spec.model_dump(mode="json", exclude=NOT_IN_KEY),
        "data": {k: file_digest(paths.resolve(v)) if v else None for k, v in files.items()},
        "base": _base_model(spec),
        "options": options,
        "code": {"code": code, **versions},
    }


def cache_key(inputs: dict[str, Any]) -> str:
    """The hex sha256 of ``inputs`` (see key_inputs)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


def lookup(key: str) -> Path | None:
    """The complete entry for ``key``, or None (cache off, no entry, or a torn one)."""
    root = cache_dir()
    if root is None:
        return None
    entry = root / key
    final = entry / FINAL_CHECKPOINT
    if (entry / runfolder.JOB_FILE).is_file() and final.is_dir() and any(final.iterdir()):
        return entry
    return None


def claimed(key: str | None, on_wait: Callable[[], None]) -> AbstractContextManager[None]:
    """Hold ``key`` while looking it up and making it: a second submission of the same tuning
    waits here, then finds the entry instead of training again (nothing held for ``key`` None)."""
    root = cache_dir()
    if root is None or key is None:
        return contextlib.nullcontext()
    return file_lock(root / f".{key}.lock", on_wait)


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    elif src.is_file():
        shutil.copy2(src, dest)


def store(inputs: dict[str, Any], out: Path, job: dict[str, Any]) -> None:
    """Copy a finished tuning folder ``out`` and its Job record ``job`` into the cache under the
    key of ``inputs`` (atomically; an entry another process wrote first is kept; a copy that
    fails leaves no entry and raises nothing: the tuning itself is done)."""
    root, key = cache_dir(), cache_key(inputs)
    if root is None or lookup(key) is not None:
        return
    with contextlib.suppress(OSError), atomic_folder(root / key) as tmp:
        for item in ENTRY_ITEMS:
            _copy(out / item, tmp / item)
        (tmp / runfolder.JOB_FILE).write_text(json.dumps(job, indent=1), "utf-8")
        (tmp / KEY_FILE).write_text(json.dumps(inputs, indent=1, sort_keys=True), "utf-8")


def restore(entry: Path, out: Path) -> dict[str, Any]:
    """Copy an entry's checkpoints and loss curve into the output folder ``out`` (each one
    atomically) and return the job record the entry was made from."""
    for item in ENTRY_ITEMS:
        if (entry / item).is_dir():
            with atomic_folder(out / item) as tmp:
                _copy(entry / item, tmp)
        elif (entry / item).is_file():
            write_text(out / item, (entry / item).read_text(encoding="utf-8"))
    return dict(json.loads((entry / runfolder.JOB_FILE).read_text(encoding="utf-8")))
