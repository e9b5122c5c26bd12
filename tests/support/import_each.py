"""Import each named routerlib module in a process of its own, with no other routerlib module
loaded (third-party modules any of them pulls in are loaded already).

Run as ``python tests/support/import_each.py MODULE...``; prints a JSON object mapping each module
that failed to its traceback. A throwaway child first imports every module to learn which
third-party modules they pull in; this process imports only those (never a routerlib module),
then forks one child per module. Each child starts with no routerlib module loaded, so an import
that works only after another routerlib module was imported still fails, and the heavy
third-party imports are paid once instead of once per module.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable


def _in_child(work: Callable[[], bytes]) -> bytes:
    """Run ``work()`` in a forked child; its bytes come back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            data = work()
        except BaseException:  # noqa: BLE001 - every failure is reported to the parent
            data = ("\0" + traceback.format_exc()).encode()
        with os.fdopen(write, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code and not data:  # killed (a crash in a C extension, out of memory) before it wrote
        return f"\0the child died (exit status {code})".encode()
    return data


def _third_party(modules: list[str]) -> list[str]:
    def load_all() -> bytes:
        before = set(sys.modules)
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the per-module pass reports it
                pass
        pulled = [m for m in sys.modules if m not in before and not m.startswith("routerlib")]
        return json.dumps(pulled).encode()

    data = _in_child(load_all)
    return [] if data.startswith(b"\0") else list(json.loads(data))


def main(modules: list[str]) -> dict[str, str]:
    for name in _third_party(modules):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - a private module that only loads in context
            pass
    assert not any(m.startswith("routerlib") for m in sys.modules), "preloaded a routerlib module"
    failures = {}
    for name in modules:
        data = _in_child(lambda name=name: importlib.import_module(name) and b"")
        if data:
            failures[name] = data.decode(errors="replace").lstrip("\0")
    return failures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
