"""Wall time of `make run`'s pipeline (both local params files, comparison and report) against
its 10-minute budget on this machine, as on a fresh clone: a temporary outputs root, an empty
tuning cache (a cached tuning would re-attach instead of tuning) and an empty model cache (the
embedded model is built first). ``--sequential-too`` then runs the same pipeline with
``--parallel 1`` (the two runs one after the other, each kernel with every core) and prints the
ratio of the two wall times, measured side by side in this one process. Prints time / 600 s, each stage's seconds and,
per report in the run folders (test rows per decoding, validation rows per checkpoint), strict
json_valid / schema_valid / route_plan_exact / tool_sequence_exact and seconds per generated token
(the leaderboard's: mean request latency over mean completion tokens)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BUDGET_S = 600.0
SHOWN = ("json_valid", "schema_valid", "route_plan_exact", "tool_sequence_exact")


def print_decodings(outputs: Path) -> None:
    """One line per run folder and decoding: rows scored and the strict SHOWN metrics."""
    from routerlib import compare, runfolder

    for report in sorted(outputs.glob("*/**/report.json")):
        where = report.relative_to(outputs)
        if "baselines" in where.parts or "report" in where.parts[:1]:
            continue
        data = runfolder.read_report(report)
        strict = data["strict"]["overall"]
        figures = "  ".join(f"{name} {strict[name]:.3f}" for name in SHOWN if name in strict)
        rows = data["config"]["total_samples"]
        per_token = compare.seconds_per_token(data)
        timing = f"  s/token {per_token:.4f}" if per_token else ""
        print(f"{where.parent}: {rows} rows: {figures}{timing}")


def timed_run(extra: list[str]) -> float:
    """Seconds of one `make run` pipeline in fresh folders (outputs, tuning cache, model cache)."""
    with tempfile.TemporaryDirectory() as scratch:
        folders = {name: Path(scratch) / name for name in ("outputs", "tuning", "models")}
        env = {
            **os.environ,
            "ROUTERLIB_OUTPUTS": str(folders["outputs"]),
            "ROUTERLIB_TUNING_CACHE": str(folders["tuning"]),
            "ROUTERLIB_CACHE": str(folders["models"]),
        }
        command = [sys.executable, "-m", "routerlib", "run", *RUN, *extra]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f"routerlib run {' '.join(extra)} failed (exit {proc.returncode})")
        print_decodings(folders["outputs"])
    return seconds


#: `make run`'s command after `routerlib run`.
RUN = ["params/local.yaml", "params/local_full.yaml", "--compare", "--report"]


def main() -> None:
    seconds = timed_run([])
    print(f"make run pipeline: {seconds:.0f} s (budget {BUDGET_S:.0f} s)")
    result = f"ratio={seconds / BUDGET_S:.3f}"
    if "--sequential-too" in sys.argv[1:]:
        sequential = timed_run(["--parallel", "1"])
        print(f"the same, one run after the other (--parallel 1): {sequential:.0f} s")
        result += f" sequential_over_parallel={sequential / seconds:.3f}"
    print(f"RESULT bench_make_run {result}")


if __name__ == "__main__":
    main()
