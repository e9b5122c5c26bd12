"""Does the constrained tuned model beat the untuned base model and the majority baseline?

For each finished local run folder (one `routerlib run params/local.yaml` makes; default: the
newest under the outputs root), the untuned base model (the run's ``base_model``) is scored on
exactly the run's test rows, free and constrained, with the run's settings and through the
pipeline's own predictor path (routerlib.untuned.evaluate_base); its reports go to
``<outputs>/router-quality/<run folder>/`` (``--out``), never into the run folder, and a second
call reuses their prediction cache. Printed per run: strict json_valid, schema_valid,
tool_sequence_exact, route_plan_exact, route_tool_recall and route_first_tool_match of the tuned
model (free, constrained), the base model (free, constrained) and the run's previous routers
(majority, rules); then compare.py's paired test (McNemar on yes/no metrics, paired bootstrap on
rates) of the tuned constrained model against the base constrained, the tuned free and the
majority baseline, with delta (tuned constrained minus reference) and p-value per metric.

A quality measurement, not a speed one: nothing is timed. The final line is
``RESULT bench_router_quality key=value ...`` (strict rates and p-values of tool_sequence_exact
and route_plan_exact; keys get an ``r<N>_`` prefix when several runs are given).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routerlib import display, paths, runfolder, untuned  # noqa: E402
from routerlib.errors import InputError  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

#: Where the base model's reports go under the outputs root (not a run folder: no metrics.json).
OUT_NAME = "router-quality"
#: Metrics the RESULT line carries, with their short key names.
RESULT_METRICS = {"tool_sequence_exact": "tool_seq", "route_plan_exact": "plan"}
#: References of the paired tests the RESULT line carries, with their short key names.
RESULT_REFERENCES = {"base constrained": "base_c", "baseline majority": "majority"}


def newest_local_run() -> tuple[Any, Any]:
    """The newest finished local run under the outputs root (by its metrics.json), as
    ``untuned.finished_local_run`` reads it (its reports read once)."""
    for folder in sorted(
        runfolder.find_folders(runfolder.METRICS_FILE),
        key=lambda p: (p / "metrics.json").stat().st_mtime,
    )[::-1]:
        try:
            return untuned.finished_local_run(folder)
        except InputError:
            continue
    raise InputError(
        f"no finished local run under {paths.outputs_root()}: make one with "
        "`routerlib run params/local.yaml`, or name RUN_DIR"
    )


def result_pairs(tests: pd.DataFrame) -> list[tuple[str, float]]:
    """The RESULT line's key=value pairs of one run, from its paired tests (so every rate is
    over the same test rows): rows, then per metric the tuned constrained rate, each
    reference's rate and the p-value against it."""
    out = [("rows", float(tests["n"].max()))]
    for metric, short in RESULT_METRICS.items():
        rows = tests[tests["metric"] == metric].set_index("reference")
        if rows.empty:
            continue
        out.append((f"{short}_tuned_c", float(rows["subject_rate"].iloc[0])))
        for reference, key in RESULT_REFERENCES.items():
            if reference in rows.index:
                out.append((f"{short}_{key}", float(rows.loc[reference, "reference_rate"])))
                out.append((f"p_{short}_vs_{key}", float(rows.loc[reference, "p_value"])))
    return out


def count(value: float) -> str:
    """A McNemar row count (rows fixed / broken); a rate's bootstrap has none."""
    return display.MISSING if display.missing(value) else str(int(value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="finished local run folders")
    parser.add_argument("--out", help=f"reports folder (default: <outputs>/{OUT_NAME})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    out_root = Path(args.out) if args.out else paths.outputs_root() / OUT_NAME
    if not args.runs:
        try:
            newest = newest_local_run()
        except InputError as exc:  # nothing to measure on this machine yet: not a failure
            print(f"SKIPPED bench_router_quality: {exc}")
            return 0
    try:
        runs = [untuned.finished_local_run(Path(p)) for p in args.runs] or [newest]
        result: list[tuple[str, float]] = []
        for number, (run, own) in enumerate(runs, 1):
            base = untuned.evaluate_base(
                run, untuned.base_dir(run, out_root), progress=not args.no_progress
            )
            reports = untuned.router_reports(own, base)
            figures = untuned.figures_table(reports)
            tests = untuned.paired_table(reports)
            cfg = run.config
            print(
                f"\n{run.path.name}: base model {cfg.base_model}, {cfg.tuning_mode}, "
                f"max_tokens {cfg.max_tokens}, test rows {int(figures['rows'].max())}; "
                f"base reports in {untuned.base_dir(run, out_root)}"
            )
            print("strict figures (an invalid answer is a miss):")
            print(figures.to_string(float_format=lambda v: f"{v:.3f}"))
            rows = figures["rows"]
            if rows.nunique() > 1:
                print(
                    f"(previous routers scored on all {int(rows.max())} test rows, the models on "
                    f"the first {int(rows.min())} (eval_limit); the paired tests use the rows both "
                    "scored)"
                )
            print(f"paired tests: {untuned.SUBJECT} minus reference, same test rows")
            print(
                tests.to_string(
                    index=False,
                    na_rep=display.MISSING,
                    formatters={
                        "subject_rate": "{:.3f}".format,
                        "reference_rate": "{:.3f}".format,
                        "delta": "{:+.3f}".format,
                        "p_value": "{:.4f}".format,
                        "b01": count,
                        "b10": count,
                    },
                )
            )
            prefix = f"r{number}_" if len(runs) > 1 else ""
            result += [(prefix + key, value) for key, value in result_pairs(tests)]
    except InputError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    print("RESULT bench_router_quality " + " ".join(f"{k}={v:.4g}" for k, v in result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
