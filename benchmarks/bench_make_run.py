"""Wall time of `make run`'s pipeline (both local params files, comparison and report) against
its 10-minute budget on this machine, in a temporary outputs root and an empty tuning cache (a
cached tuning would re-attach instead of tuning). Prints time / 600 s and each stage's seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 600.0


def main() -> None:
    with tempfile.TemporaryDirectory() as outputs, tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ROUTERLIB_OUTPUTS": outputs, "ROUTERLIB_TUNING_CACHE": cache}
        command = [
            sys.executable,
            "-m",
            "routerlib",
            "run",
            "params/local.yaml",
            "params/local_full.yaml",
            "--compare",
            "--report",
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env)
        seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"routerlib run failed (exit {proc.returncode})")
    print(f"make run pipeline: {seconds:.0f} s (budget {BUDGET_S:.0f} s)")
    print(f"RESULT bench_make_run ratio={seconds / BUDGET_S:.3f}")


if __name__ == "__main__":
    main()
