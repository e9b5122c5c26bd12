"""Benchmark: ``routerlib prepare`` against a plain load-everything-then-shuffle conversion.

Both convert the same 100,000 synthetic Week-2 rows (generated once into a temp folder) with the
same flags; each conversion runs in its own fresh subprocess, which reports its wall time and
its peak resident memory (ru_maxrss). Both workers import the same modules before the clock
starts, so interpreter start-up and imports are not part of either measurement. The outputs must
be byte-identical. Each side runs ``--repeat`` times (alternating) and the best time and the
lowest peak are compared.

    .venv/bin/python benchmarks/bench_prepare.py [--rows 100000] [--repeat 2]

Goals: time <= 0.7x and peak memory <= 0.25x of the plain conversion. The last line is
machine-readable: ``RESULT bench_prepare time_ratio=<x> mem_ratio=<y>``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPLITS = ("train.jsonl", "validation.jsonl", "test.jsonl")
FLAGS = {"val_ratio": 0.1, "test_ratio": 0.05, "seed": 7}


def plain_convert(src: str, out: str) -> None:
    """The original algorithm, written the obvious way: every row in memory, shuffle, slice."""
    import random

    from routerlib import schema

    with open(src, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    random.Random(FLAGS["seed"]).shuffle(rows)
    n = len(rows)
    val = int(n * FLAGS["val_ratio"])
    test = int(n * FLAGS["test_ratio"])
    parts = (rows[: n - val - test], rows[n - val - test : n - test], rows[n - test :])
    os.makedirs(out, exist_ok=True)
    for name, part in zip(SPLITS, parts, strict=True):
        with open(os.path.join(out, name), "w", encoding="utf-8") as handle:
            for row in part:
                prompt = schema.build_prompt(row["user_query"])
                completion = schema.completion_text(row)
                line = json.dumps({"prompt": prompt, "completion": completion}, ensure_ascii=False)
                handle.write(line + "\n")


def routerlib_convert(src: str, out: str) -> None:
    """``routerlib prepare`` as a user runs it (the CLI entry point, progress bars off)."""
    from routerlib.cli import main

    code = main(
        [
            "prepare",
            "--input",
            src,
            "--output-dir",
            out,
            "--val-ratio",
            str(FLAGS["val_ratio"]),
            "--test-ratio",
            str(FLAGS["test_ratio"]),
            "--seed",
            str(FLAGS["seed"]),
            "--no-progress",
        ]
    )
    if code != 0:
        raise SystemExit(f"routerlib prepare exited with {code}")


def routerlib_one_process(src: str, out: str) -> None:
    """dataset.prepare with a single reader process (for context: what the parallel scan buys)."""
    from routerlib import dataset

    dataset.prepare(src, out, progress=False, workers=1, **FLAGS)  # type: ignore[arg-type]


def worker(kind: str, src: str, out: str) -> None:
    """Run one conversion in this (fresh) process and print its time and peak RSS as JSON."""
    import resource

    import routerlib.cli  # noqa: F401  same imports on both sides before the clock starts
    import routerlib.convert
    import routerlib.dataset  # noqa: F401
    import routerlib.schema  # noqa: F401

    func = {
        "routerlib": routerlib_convert,
        "plain": plain_convert,
        "one-proc": routerlib_one_process,
    }[kind]
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        saved = sys.stdout
        sys.stdout = quiet
        try:
            func(src, out)
        finally:
            sys.stdout = saved
    seconds = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux. prepare may read the input in several worker processes;
    # RUSAGE_CHILDREN reports the largest of them, so own peak + workers x largest child is an
    # upper bound of the memory all processes held at once (the plain conversion has none).
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers = 0
    if kind == "routerlib":
        workers = routerlib.convert.auto_workers(os.path.getsize(src), None)
        workers = workers if workers > 1 else 0
    peak = own + workers * child
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "own_mib": own, "workers": workers}))


def run_worker(kind: str, src: Path, out: Path) -> dict[str, float]:
    """Start a fresh interpreter for one conversion and read its report."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(src), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="also time prepare with one reader process (context only, not in the RESULT line)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0

    from routerlib import synth

    with tempfile.TemporaryDirectory(
        prefix="bench_prepare.", dir=os.environ.get("BENCH_TMP")
    ) as tmp:
        root = Path(tmp)
        src = root / "rows.jsonl"
        start = time.perf_counter()
        synth.write_rows(src, args.rows, args.seed)
        size_mib = src.stat().st_size / 2**20
        print(
            f"input: {args.rows:,} synthetic rows, {size_mib:,.1f} MiB "
            f"(generated in {time.perf_counter() - start:.1f} s)"
        )
        results: dict[str, list[dict[str, float]]] = {"plain": [], "routerlib": [], "one-proc": []}
        for attempt in range(args.repeat):
            order = ("plain", "routerlib") if attempt % 2 == 0 else ("routerlib", "plain")
            if args.single_process:
                order = (*order, "one-proc")
            for kind in order:
                out = root / f"{kind}-{attempt}"
                report = run_worker(kind, src, out)
                results[kind].append(report)
                workers = int(report["workers"])
                note = f" ({workers} reader processes included)" if workers else ""
                print(
                    f"  run {attempt + 1} {kind:9s}: {report['seconds']:7.2f} s, "
                    f"peak RSS {report['peak_mib']:8.1f} MiB{note}"
                )
        identical = all(
            filecmp.cmp(root / "plain-0" / name, root / f"{kind}-{i}" / name, shallow=False)
            for name in SPLITS
            for kind in results
            for i in range(len(results[kind]))
        )
        best = {
            kind: (min(r["seconds"] for r in runs), min(r["peak_mib"] for r in runs))
            for kind, runs in results.items()
            if runs
        }
    time_ratio = best["routerlib"][0] / best["plain"][0]
    mem_ratio = best["routerlib"][1] / best["plain"][1]
    print()
    print(f"{'':12s}{'plain':>12s}{'routerlib':>12s}{'ratio':>8s}{'goal':>8s}")
    print(
        f"{'time (s)':12s}{best['plain'][0]:12.2f}{best['routerlib'][0]:12.2f}"
        f"{time_ratio:8.2f}{'<= 0.70':>8s}  {'met' if time_ratio <= 0.7 else 'NOT met'}"
    )
    print(
        f"{'peak (MiB)':12s}{best['plain'][1]:12.1f}{best['routerlib'][1]:12.1f}"
        f"{mem_ratio:8.2f}{'<= 0.25':>8s}  {'met' if mem_ratio <= 0.25 else 'NOT met'}"
    )
    if "one-proc" in best:
        print(
            f"{'1 process':12s}{'':12s}{best['one-proc'][0]:12.2f}"
            f"{best['one-proc'][0] / best['plain'][0]:8.2f}  (time, one reader process; context)"
        )
    print(f"outputs identical: {'yes' if identical else 'NO'}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"RESULT bench_prepare time_ratio={time_ratio:.3f} mem_ratio={mem_ratio:.3f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
