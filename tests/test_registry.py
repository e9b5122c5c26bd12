"""One registry reader and writer (runfolder.Registry) behind jobs.json, pipelines.json,
endpoints.json and batch_jobs.json: a bad file is named with its field, an update is locked and
atomic, a failed update writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routerlib.errors import InputError
from routerlib.runfolder import Registry
from routerlib.serving import batch, vertex


def test_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    assert Registry(str(tmp_path / "none.json"), "jobs", "key").read() == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"endpoints": []}', "jobs: must be a list"),
        ('[{"key": 1}]', "jobs: must be a list"),
        ('{"jobs": [{"key": 1}, 3]}', "jobs[1]: must be an object"),
    ],
)
def test_a_foreign_file_is_named_with_its_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "reg.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        Registry(str(path), "jobs", "key").read()
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_update_writes_back_and_a_failed_update_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "reg.json"
    registry = Registry(str(path), "endpoints", "endpoint_name")
    with registry.edit() as records:
        records.append({"endpoint_name": "e1"})
    assert json.loads(path.read_text()) == {"endpoints": [{"endpoint_name": "e1"}]}
    assert (tmp_path / "reg.lock").exists()
    before = path.read_bytes()
    with pytest.raises(RuntimeError), registry.edit() as records:
        records.clear()
        raise RuntimeError("stopped half way")
    assert path.read_bytes() == before


def test_vertex_and_batch_read_their_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path))
    vertex.REGISTRY.path().write_text('{"endpoints": [{"endpoint_name": "e"}]}')
    batch.REGISTRY.path().write_text('{"endpoints": []}')  # the wrong key for batch jobs
    assert vertex.REGISTRY.read() == [{"endpoint_name": "e"}]
    with pytest.raises(InputError, match=r"batch_jobs\.json: jobs: must be a list"):
        batch.REGISTRY.read()


_HOLDER = """
import sys, time
from routerlib.runfolder import Registry
with Registry(sys.argv[1], "jobs", "by").edit() as records:
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    records.append({"by": "other process"})
"""


def test_an_update_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    """Another process reads, holds the lock a while, then writes: an update started meanwhile
    waits for it and then sees its record (without the lock one of the two records is lost)."""
    path = tmp_path / "reg.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), "1.0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with Registry(str(path), "jobs", "by").edit() as records:
            waited = time.monotonic() - started
            records.append({"by": "this process"})
    finally:
        assert holder.wait(timeout=60) == 0
    assert waited > 0.5
    assert json.loads(path.read_text()) == {
        "jobs": [{"by": "other process"}, {"by": "this process"}]
    }


def test_the_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "reg.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), "600"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.wait(timeout=60)
    with Registry(str(path), "jobs", "by").edit() as records:  # would wait forever if held
        records.append({"by": "this process"})
    assert json.loads(path.read_text()) == {"jobs": [{"by": "this process"}]}
