"""Wall time of `make run`'s pipeline (both local params files, comparison and report) against
its 10-minute budget on this machine, in a temporary outputs root and an empty tuning cache (a
cached tuning would re-attach instead of tuning). Prints time / 600 s, each stage's seconds and,
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
        if not proc.returncode:
            print_decodings(Path(outputs))
    if proc.returncode:
        raise SystemExit(f"routerlib run failed (exit {proc.returncode})")
    print(f"make run pipeline: {seconds:.0f} s (budget {BUDGET_S:.0f} s)")
    print(f"RESULT bench_make_run ratio={seconds / BUDGET_S:.3f}")


if __name__ == "__main__":
    main()
