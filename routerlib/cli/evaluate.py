"""CLI: ``routerlib evaluate`` (score predictions, generating them when asked) and ``routerlib
baseline`` (the previous router logic written as a prediction file)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from routerlib.cli import params
from routerlib.cli.params import Keys, add_params_option, option, pick, same
from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.metric_names import HEADLINE
from routerlib.metrics import failed_rows_line, gate_line, thresholds_file
from routerlib.serving.base import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S

#: Overall metrics shown in the summary table (original figure beside the strict one): the
#: headline, with schema validity beside JSON validity.
SUMMARY_METRICS = (HEADLINE[0], "schema_valid", *HEADLINE[1:])


#: ``routerlib evaluate --params FILE``: flag dest -> the RunConfig key notebook 04 scores with
#: (with --params the run is gated as notebook 04 gates it: ``thresholds``, else the packaged).
EVALUATE_PARAMS: Keys = {
    "limit": "eval_limit",
    "thresholds": ("thresholds", lambda path: params.path_flag(path) or "default"),
    "location": "deploy_location",
    **same("max_tokens concurrency project api_endpoint gcs_prefix"),
    **same("machine_type accelerator_type accelerator_count"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and ``baseline``."""
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions (or generate them from an endpoint / checkpoint / batch job) "
        "against gold",
        description="Score predictions against gold exactly as the team's earlier evaluator, plus strict "
        "figures, schema validity, intervals and per-sample records. With --endpoint, "
        "--checkpoint or --batch the predictions are generated first (cached beside the "
        "report; a killed run resumes or re-attaches). Exit 1 when a --thresholds gate fails.",
    )
    p.add_argument("--gold", required=True, metavar="FILE", help="gold JSONL (prompt, completion)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", metavar="FILE", help="prediction JSONL, one line per gold row")
    source.add_argument(
        "--endpoint",
        metavar="NAME_OR_URL",
        help="http://host:port/v1 (OpenAI-compatible), an http URL ending in :predict (vLLM "
        "predict JSON), or a Vertex endpoint (projects/…/endpoints/ID or numeric id)",
    )
    note = "local checkpoint folder: serve it here and evaluate"
    source.add_argument("--checkpoint", metavar="DIR", help=note)
    note = "with --checkpoint: generate in this process (batches of 16), no local HTTP server"
    p.add_argument("--in-process", action="store_true", help=note)
    source.add_argument(
        "--batch",
        metavar="MODEL",
        help="a Vertex batch prediction job on this Model Registry model (the one a deploy "
        "uploaded, as recorded; or projects/…/models/ID): no endpoint, no 429s",
    )
    note = "report JSON; samples, cache and predictions are written beside it"
    p.add_argument("--out", required=True, metavar="REPORT.json", help=note)
    p.add_argument(
        "--thresholds",
        metavar="FILE",
        help="gate file (router_benchmark_thresholds.json format); 'default' = the packaged gates "
        "(with --params: the params' thresholds, else the packaged gates, as notebook 04)",
    )
    note = "the previous router's prediction JSONL: deltas, fixed/broken samples, significance"
    p.add_argument("--compare-to", metavar="PREV_PREDS", help=note)
    option(p, "--concurrency", key="concurrency", type=int, metavar="N", help="requests in flight")
    note = "generation limit per row"
    option(p, "--max-tokens", key="max_tokens", type=int, metavar="N", help=note)
    p.add_argument("--limit", type=int, metavar="N", help="evaluate the first N gold rows only")
    note = "model name for an OpenAI-compatible endpoint (default: the first listed)"
    p.add_argument("--model", help=note)
    note = "seconds per request"
    option(p, "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S", help=note)
    note = "retries per row on 429, 5xx, timeouts, dropped connections"
    option(p, "--retries", type=int, default=DEFAULT_RETRIES, metavar="N", help=note)
    params.cloud_flags(p, "Vertex region (Vertex endpoints, batch jobs)", project=None)
    batch = p.add_argument_group("batch prediction (--batch)")
    note = "where the instances JSONL and the job's output go"
    batch.add_argument("--gcs-prefix", metavar="gs://BUCKET/PREFIX", help=note)
    params.hardware_flags(batch)
    note = "submit a job for the rows the last job failed (otherwise they are only listed)"
    batch.add_argument("--rerun-failed", action="store_true", help=note)
    note = "seconds between job status checks"
    option(
        batch, "--poll-interval", dest="poll_s", type=float, default=30.0, metavar="S", help=note
    )
    p.add_argument(
        "--constrained",
        action="store_true",
        help="send the completion's JSON Schema with every request (--endpoint, --checkpoint, "
        "--batch): response_format on /v1; on :predict, Vertex endpoints and batch jobs a "
        "chatCompletions instance with response_format",
    )
    note = "hide the progress bar"
    p.add_argument("--no-progress", dest="progress", action="store_false", help=note)
    add_params_option(p, EVALUATE_PARAMS, run_evaluate)

    b = subparsers.add_parser(
        "baseline",
        help="write the previous router logic's predictions (majority template or keyword rules)",
    )
    b.add_argument(
        "--gold", required=True, metavar="FILE", help="gold JSONL whose prompts to route"
    )
    b.add_argument("--out", required=True, metavar="PREDS", help="prediction JSONL to write")
    b.add_argument(
        "--kind",
        choices=("majority", "rules"),
        default=run_default("baseline"),
        help="majority: /general-search → /math → /code for every row; rules: a keyword router",
    )
    b.set_defaults(func=run_baseline)


def predictor_from_args(args: argparse.Namespace) -> Any:
    """The predictor ``--endpoint``, ``--checkpoint`` or ``--batch`` names (close it when done)."""
    from routerlib.serving import factory

    settings = params.vertex_settings(args)
    online = pick(args, "concurrency retries timeout")
    if args.endpoint is not None:
        kind, target = factory.kind_of(args.endpoint)
        options = factory.address_options(kind, settings, model=args.model, **online)
        return factory.make(kind, target, **options)
    if args.checkpoint is not None:
        if not Path(args.checkpoint).exists():
            raise InputError(f"{args.checkpoint}: checkpoint folder not found")
        if args.in_process:
            return factory.make("local", args.checkpoint)
        return factory.make("local-server", args.checkpoint, **online)
    batch = pick(args, "gcs_prefix rerun_failed poll_s")  # no --gcs-prefix: BatchPredictor says so
    return factory.make("batch", args.batch, settings=settings, **batch)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``routerlib evaluate``: 0 on success, 1 when the gate fails."""
    from routerlib.evaluate import evaluate, score_predictions

    for flag, least in (("concurrency", 1), ("max_tokens", 1), ("limit", 1), ("retries", 0)):
        value = getattr(args, flag)
        if value is not None and value < least:
            raise InputError(f"--{flag.replace('_', '-')} must be >= {least}, got {value}")
    if args.constrained and args.pred is not None:
        raise InputError("--constrained applies to --endpoint, --checkpoint or --batch")
    if args.in_process and args.checkpoint is None:
        raise InputError("--in-process applies to --checkpoint")
    if args.thresholds is not None:
        args.thresholds = str(thresholds_file(args.thresholds))  # "default": the packaged gates
    for dest in ("gold", "pred", "thresholds", "compare_to"):
        value = getattr(args, dest)
        if value is not None and not Path(value).is_file():
            raise InputError(f"{value}: --{dest.replace('_', '-')} file not found")
    scoring = {"out": args.out, "thresholds": args.thresholds, "compare_to": args.compare_to}
    if args.pred is not None:
        report = score_predictions(args.gold, args.pred, limit=args.limit, **scoring)
    else:
        with contextlib.closing(predictor_from_args(args)) as predictor:
            report = evaluate(
                predictor,
                args.gold,
                max_tokens=args.max_tokens,
                limit=args.limit,
                constrained=args.constrained,
                progress=args.progress,
                **scoring,
            )
    print(summary(report, args.out))
    if failed := failed_rows_line(report):
        print(failed, file=sys.stderr)
    gate = report.get("threshold_results") or {}
    return 1 if args.thresholds and gate.get("overall_pass") is not True else 0


def _fmt(value: Any, signed: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, float | int):
        return "-" if value is None else str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}" if isinstance(value, float) else str(value)


def summary(report: dict[str, Any], out: str | Path) -> str:
    """A short text table: overall original (valid predictions) and strict (every sample)
    figures, the change against the previous router when compared, latency, and the gate."""
    overall = dict((report.get("extra") or {}).get("overall", {}))
    overall.update((report.get("metrics") or {}).get("overall", {}))
    strict = (report.get("strict") or {}).get("overall", {})
    comparison = report.get("comparison") or {}
    deltas = (comparison.get("strict") or {}).get("overall", {})
    tests = (comparison.get("significance") or {}).get("overall", {})
    n = overall.get("samples", (report.get("config") or {}).get("total_samples"))
    header = f"{'metric':<26}{'original':>10}{'strict':>10}"
    if comparison:
        header += f"{'Δ strict':>10}{'p':>8}"
    lines = [f"report: {out}  ({n} samples)", header]
    for name in SUMMARY_METRICS:
        if name not in overall and name not in strict:
            continue
        line = f"{name:<26}{_fmt(overall.get(name)):>10}{_fmt(strict.get(name)):>10}"
        if comparison:
            delta = (deltas.get(name) or {}).get("delta")
            p_value = (tests.get(name) or {}).get("p_value")
            line += f"{_fmt(delta, signed=True):>10}{_fmt(p_value):>8}"
        lines.append(line)
    if latency := report.get("latency"):
        lines.append(
            f"latency p50 {_fmt(latency.get('p50_s'))} s, p95 {_fmt(latency.get('p95_s'))} s"
        )
    if tokens := report.get("tokens"):
        lines.append(
            f"tokens: prompt {tokens.get('prompt_tokens_total')}, "
            f"completion {tokens.get('completion_tokens_total')}"
        )
    gate = report.get("threshold_results")
    if isinstance(gate, dict) and "overall_pass" in gate:
        lines.append(gate_line(gate))
    return "\n".join(lines)


def run_baseline(args: argparse.Namespace) -> int:
    """Handler of ``routerlib baseline``."""
    from routerlib.baselines import write_baseline

    print(f"baseline {args.kind}: {write_baseline(args.gold, args.out, args.kind)}")
    return 0
