"""Finished runs side by side (docs/scoring.md): the leaderboard, paired significance and a
conclusion written from the numbers metrics.py recorded (never recomputed). A run with a missing or
foreign file still gets a row: NaN for the number, the problem in ``RunSummary.problems``."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from routerlib import metrics, paths, pricing, runfolder
from routerlib.config import default_params_file
from routerlib.display import router_label, spoken
from routerlib.metric_names import ALL_BUCKETS as BUCKETS
from routerlib.metric_names import DECIDING_METRICS, HEADLINE, PRIMARY
from routerlib.models import EMBEDDED_MODEL
from routerlib.paired import paired_test
from routerlib.runfolder import BaselineInfo, MetricsRecord, RunFolderError, SampleRecord

T = TypeVar("T")

#: Two values closer than this are a tie.
TIE_TOLERANCE = 1e-9
#: Per-sample metrics tested for paired significance between runs (binary → McNemar, rates →
#: bootstrap).
SIGNIFICANCE_METRICS = tuple(
    "json_valid route_plan_exact tool_sequence_exact route_first_tool_match route_length_match "
    "metrics_keys_match todo_covers_all_tools handoff_tools_covered route_tool_precision "
    "route_tool_recall todo_tool_alignment".split()
)
ALPHA = 0.05
#: Cost columns of the leaderboard (from metrics.json ``cost``, priced by the pricing table).
TUNING_USD = "tuning_usd"
SERVING_USD = "serving_usd_per_1000_routes"
#: The price rows of a run's cost that are not verified (empty: every row used is).
UNVERIFIED = "unverified_prices"
NAN = float("nan")
#: Whether the price table behind a run's cost was verified (pricing.prices_verified).
PRICES_VERIFIED = "prices_verified"


# ----------------------------------------------------------------------------- finished runs


@dataclass
class RunSummary:
    """One scored router: a tuned model of a run folder, or a baseline router evaluated in it."""

    name: str
    path: Path
    kind: str  # "model" | "baseline"
    report_path: Path
    metrics: MetricsRecord | None = None  # metrics.json (models only)
    report: dict[str, Any] | None = None  # report.json, checked against runfolder.ReportRecord
    baseline_kind: str = ""
    baselines: list[RunSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    decoding: str = "free"  # "free" | "constrained" (models; baselines write no text)
    variants: list[RunSummary] = field(default_factory=list)  # the run's other decodings
    #: its metrics.json entry: ``evaluation`` (the headline decoding), ``decodings[…]`` or
    #: ``baselines[…]``; None when metrics.json does not list it
    section: BaselineInfo | None = None

    @property
    def run_name(self) -> str:
        """The run folder's name."""
        return self.path.name

    @property
    def samples_path(self) -> Path | None:
        """The per-sample records: the report's ``samples_path``, else samples.jsonl beside it."""
        value = (self.report or {}).get("samples_path")  # relative: the run's
        file = self.path / (value or runfolder.samples_path(self.report_path))
        return file if file.is_file() else None

    @functools.cached_property
    def samples(self) -> list[SampleRecord]:
        """Per-sample records, read once (none, and one line in ``problems``, when the file is
        bad)."""
        file = self.samples_path
        return (_read(runfolder.read_samples, file, self.problems) or []) if file else []

    def loss_curve(self) -> list[dict[str, Any]]:
        """Tuning loss points: metrics.json's, else the tuning folder's loss_curve.json."""
        if self.metrics is not None and self.metrics.tuning and self.metrics.tuning.loss_curve:
            return self.metrics.tuning.loss_curve
        file = self.path / runfolder.FULL_TUNING_DIR / runfolder.LOSS_CURVE_FILE
        curve = _read(runfolder.read_loss_curve, file, self.problems) if file.is_file() else None
        return curve or []

    @functools.cached_property
    def test_key(self) -> str | None:
        """A fingerprint of the gold test rows (the gold file's bytes, hashed once), to pair two
        routers."""
        gold = _get(self.report, "config", "gold_path")
        try:
            return hashlib.sha256(paths.resolve(gold).read_bytes()).hexdigest() if gold else None
        except OSError:
            return None


def _read(read: Callable[[Path], T], file: Path, problems: list[str]) -> T | None:
    """``read(file)``; None, and the file's problem in ``problems``, when it is bad."""
    try:
        return read(file)
    except RunFolderError as exc:
        problems.extend(exc.lines())
        return None


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def load_run(run_dir: str | Path) -> RunSummary:
    """Read one run folder into a RunSummary (model) with its baseline routers attached."""
    run_dir = Path(run_dir).resolve()
    problems: list[str] = []
    record = _read(runfolder.read_metrics, run_dir, problems)
    evaluation = record.evaluation if record else None

    def scored(name: str, report: str, problems: list[str], **fields: Any) -> RunSummary:
        file = run_dir / report
        loaded = _read(runfolder.read_report, file, problems)
        return RunSummary(
            name, run_dir, report_path=file, report=loaded, problems=problems, **fields
        )

    name = record.run.name if record else run_dir.name
    head = evaluation.decoding if evaluation else "free"
    report = evaluation.report if evaluation else runfolder.REPORT_FILE
    run = scored(name, report, problems, kind="model", metrics=record, decoding=head)
    run.section = evaluation
    for decoding, info in (record.decodings if record else {}).items():
        if decoding != head:
            variant = scored(f"{name} [{decoding}]", info.report, problems, kind="model")
            variant.metrics, variant.baselines, variant.decoding = record, run.baselines, decoding
            variant.section = info
            run.variants.append(variant)
    kinds: dict[str, BaselineInfo] = dict(record.baselines) if record else {}
    base_dir = run_dir / runfolder.BASELINES_DIR
    for folder in sorted(base_dir.iterdir()) if base_dir.is_dir() else []:
        file = runfolder.baseline_report_file(folder.name)
        if (run_dir / file).is_file():
            kinds.setdefault(folder.name, BaselineInfo(report=file))
    run.baselines.extend(
        scored(
            f"baseline:{kind}", entry.report, [], kind="baseline", baseline_kind=kind, section=entry
        )
        for kind, entry in sorted(kinds.items())
    )
    return run


def load_runs(run_paths: Sequence[str | Path] | None = None) -> list[RunSummary]:
    """The given run folders, or every run folder with a metrics.json under the outputs root; a
    run scored under several decodings gives one model per decoding (headline first)."""
    runs = [load_run(p) for p in run_paths or runfolder.find_folders(runfolder.METRICS_FILE)]
    return [r for run in runs for r in (run, *run.variants)]


def routers(runs: Iterable[RunSummary]) -> list[RunSummary]:
    """Models, then their baselines, with identical baseline results (same kind, same test rows,
    same numbers) shown once."""
    runs = list(runs)
    unique: dict[str, RunSummary] = {}
    for base in (b for r in runs for b in ([r] if r.kind == "baseline" else r.baselines)):
        key = json.dumps([base.baseline_kind, _get(base.report, "metrics")], sort_keys=True)
        unique.setdefault(key, base)
    return [*(r for r in runs if r.kind == "model"), *unique.values()]


# ----------------------------------------------------------------------------- leaderboard


def number(value: Any) -> float:
    """``value`` as a float (a bool counts 1/0); NaN when it is no number (None, text, NaN)."""
    return float(value) if isinstance(value, int | float) and value == value else NAN


def _headline_metrics(runs: Sequence[RunSummary]) -> list[str]:
    """The deciding metrics, then the headline metrics metrics.json recorded (else HEADLINE)."""
    evaluations = [r.metrics.evaluation for r in runs if r.metrics and r.metrics.evaluation]
    found = [k for e in evaluations for block in (e.headline, e.strict) for k in block]
    extra = [k for k in found if k not in DECIDING_METRICS]
    return list(dict.fromkeys([*DECIDING_METRICS, *(extra or HEADLINE)]))


def _gate_pass(run: RunSummary) -> bool | None:
    """Whether the router passed the gate: as metrics.json records it, else as its report does
    (checked against runfolder.GateResults)."""
    recorded = run.section.gate_pass if run.section else None
    return _get(run.report, "threshold_results", "overall_pass") if recorded is None else recorded


def leaderboard(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per tuned model and per distinct baseline router, ranked on the deciding metrics
    (strict). Columns: identity and settings, gate pass, each headline metric (original, strict,
    the strict value's 95% interval as ``<m> strict lo/hi``), the primary metric per bucket
    (strict), cost, train time, latency and the failing gate checks."""
    rows = routers(runs)
    headline = _headline_metrics([r for r in rows if r.kind == "model"])
    records = []
    for run in rows:
        report = run.report or {}
        overall = _get(report, "metrics", "overall") or {}
        strict = _get(report, "strict", "overall") or {}
        intervals = _get(report, "intervals", "overall") or {}
        record = run.metrics
        info, tuning = (record.run, record.tuning) if record else (None, None)
        head, head_strict = (getattr(run.section, key, {}) for key in ("headline", "strict"))
        rec: dict[str, Any] = {
            "model": run.name,
            "kind": run.kind,
            "decoding": run.decoding if run.kind == "model" else "",
            "run": run.run_name,
            **{key: getattr(info, key, None) for key in ("backend", "base_model", "tuning_mode")},
            **{key: number(getattr(info, key, None)) for key in ("adapter_size", "epochs")},
            "gate_pass": _gate_pass(run),
            "samples": number(overall.get("samples")),
        }
        for metric in headline:
            rec[metric] = number(head.get(metric, overall.get(metric)))
            rec[f"{metric} strict"] = number(head_strict.get(metric, strict.get(metric)))
            pair = intervals.get(metric)
            pair = pair if isinstance(pair, list | tuple) and len(pair) == 2 else (NAN, NAN)
            rec[f"{metric} strict lo"], rec[f"{metric} strict hi"] = map(number, pair)
        for bucket in BUCKETS[1:]:
            block = _get(report, "strict", bucket) or _get(report, "metrics", bucket) or {}
            rec[f"{bucket}: {PRIMARY}"] = number(block.get(PRIMARY))
        cost = (record.cost if record else None) or {}
        rec["cost_usd"] = number(getattr(tuning, "cost_estimate_usd", None))
        rec["train_seconds"] = number(getattr(tuning, "train_seconds", None))
        rec["checkpoint"] = (getattr(tuning, "checkpoint", None) or {}).get("served")
        rec |= {key: number(cost.get(key)) for key in (TUNING_USD, SERVING_USD, "routes_per_hour")}
        rec[PRICES_VERIFIED] = pricing.prices_verified(cost) if record else None
        # which price rows were not read from a Google source (pricing.RunCost.unverified)
        rec[UNVERIFIED] = ", ".join(cost.get("unverified") or [])
        rec |= {f"latency_{p}_s": number(_get(report, "latency", f"{p}_s")) for p in ("p50", "p95")}
        rec["s_per_token"] = number(seconds_per_token(report))
        # The gate's failed checks ("bucket.metric", the first four) and the buckets it skipped
        # for want of test rows (metrics.apply_gate).
        gate = report.get("threshold_results") or {}
        rec["failed_checks"] = "; ".join(gate.get("failed", [])[:4])
        skipped = metrics.skipped_buckets(gate)
        rec["skipped_checks"] = "; ".join(f"{b} ({n} test rows)" for b, (n, _) in skipped.items())
        records.append(rec)
    board = pd.DataFrame.from_records(records)
    if board.empty:
        return board
    for column in ("adapter_size", "epochs", "samples"):
        board[column] = board[column].round().astype("Int64")  # whole numbers; <NA> when unknown
    keys = [f"{m} strict" for m in DECIDING_METRICS if f"{m} strict" in board]
    board = board.sort_values(
        [*keys, "kind"], ascending=[False] * (len(keys) + 1), na_position="last", kind="stable"
    )
    return board.reset_index(drop=True)


def seconds_per_token(report: dict[str, Any] | None) -> float | None:
    """Mean request latency over mean completion tokens of a report (None without both)."""
    latency = _get(report, "latency", "mean_s")
    tokens = _get(report, "tokens", "completion_tokens_mean")
    return latency / tokens if latency and tokens else None


# ----------------------------------------------------------------------------- significance


def compare_pair(
    a: RunSummary, b: RunSummary, metrics: Sequence[str] = SIGNIFICANCE_METRICS
) -> list[dict[str, Any]]:
    """Paired tests (:func:`paired_test`) of router ``a`` against ``b`` on the test rows both
    scored (by ``index``), on the strict values (an invalid prediction is a miss)."""
    b_by_index = {row.index: row.strict for row in b.samples}
    both = [(row.strict, b_by_index[row.index]) for row in a.samples if row.index in b_by_index]
    out = []
    for metric in metrics:
        pairs = [
            (float(x[metric]), float(y[metric])) for x, y in both if metric in x and metric in y
        ]
        if not pairs:
            continue
        xs, ys = (list(values) for values in zip(*pairs, strict=True))
        # The reference goes first, so delta and b01 (fixed) read "model minus reference".
        test = paired_test(ys, xs, metric)
        p_value, mx, my = number(test.get("p_value")), sum(xs) / len(xs), sum(ys) / len(ys)
        rec: dict[str, Any] = {"model": a.name, "model_run": a.run_name, "reference": b.name}
        rec.update(reference_run=b.run_name, metric=metric, test=test["test"], n=len(xs))
        rec.update(model_rate=mx, reference_rate=my, delta=mx - my, ci_low=number(test["ci_low"]))
        rec.update(ci_high=number(test["ci_high"]), p_value=p_value, significant=p_value < ALPHA)
        out.append({**rec, "b01": test["b01"], "b10": test["b10"]})
    return out


def paired_reports(
    a: dict[str, Any], b: dict[str, Any], metrics: Sequence[str] = SIGNIFICANCE_METRICS
) -> dict[str, dict[str, Any]]:
    """:func:`compare_pair` of two scored reports (their samples.jsonl), by metric: ``a`` minus
    ``b``; e.g. constrained against free decoding of one model on the same rows."""

    def summary(report: dict[str, Any], name: str) -> RunSummary:
        samples = Path(str(report.get("samples_path") or ""))
        return RunSummary(
            name, samples.parent, "model", report=report, report_path=samples.parent / "report.json"
        )

    return {rec["metric"]: rec for rec in compare_pair(summary(a, "a"), summary(b, "b"), metrics)}


SIGNIFICANCE_COLUMNS = (
    "model model_run reference reference_run metric test n model_rate reference_rate delta ci_low "
    "ci_high p_value significant b01 b10".split()
)


def _strength(run: RunSummary) -> tuple[float, ...]:
    """How a model ranks for picking the comparison's reference: passing the gate, then
    :func:`_rank_key` of its strict figures."""
    gate = 1.0 if _gate_pass(run) is True else 0.0
    return (gate, *_rank_key(_get(run.report, "strict", "overall") or {}))


def significance_pairs(runs: Sequence[RunSummary]) -> list[tuple[RunSummary, RunSummary]]:
    """The (router, reference) pairs the significance table tests, each once: every model against
    its baselines, every further decoding against its run's headline decoding, and per set of test
    rows the best-ranked model against every other (docs/scoring.md; linear in the runs, not n²)."""
    models = [r for r in runs if r.kind == "model" and r.samples_path is not None]
    pairs = [(r, base) for r in models for base in r.baselines if base.samples_path is not None]
    seen: set[frozenset[int]] = set()  # the decoding pairs, either way round
    for head in models:
        for run in head.variants:
            if run.samples_path is not None and run.test_key == head.test_key:
                pairs.append((run, head))
                seen.add(frozenset((id(run), id(head))))
    groups: dict[str, list[RunSummary]] = {}
    for run in models:
        if (key := run.test_key) is not None:
            groups.setdefault(key, []).append(run)
    for group in groups.values():
        best = max(group, key=_strength)  # max keeps the first of equals: run order breaks ties
        fresh = (o for o in group if o is not best and frozenset((id(best), id(o))) not in seen)
        pairs.extend((best, other) for other in fresh)
    return pairs


def significance_table(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """Paired tests of the :func:`significance_pairs` of ``runs``; one row per (model, reference,
    metric), Δ = model minus reference."""
    records = [rec for pair in significance_pairs(runs) for rec in compare_pair(*pair)]
    table = pd.DataFrame.from_records(records, columns=SIGNIFICANCE_COLUMNS)
    for column in ("n", "b01", "b10"):
        table[column] = table[column].astype("Int64")  # counts; <NA> for bootstrap rows
    return table


# ----------------------------------------------------------------------------- conclusion


def _listed(row: pd.Series, column: str) -> str:
    """A leaderboard row's "; "-separated ``column`` as "`a`, `b`" ('' when empty)."""
    text = str(row.get(column) or "")
    return "" if text in ("", "nan") else ", ".join(f"`{item}`" for item in text.split("; "))


def _score(row: Mapping[str, Any], metric: str) -> float:
    return number(row.get(f"{metric} strict", row.get(metric)))


def _rank_key(row: Mapping[str, Any]) -> tuple[float, ...]:
    """Lexicographic on the deciding metrics (strict); unknown values rank last."""
    return tuple(-math.inf if math.isnan(v := _score(row, m)) else v for m in DECIDING_METRICS)


def _differs(x: float, y: float) -> bool:
    """Two values differ: one is known and the other not, or they are further apart than a tie."""
    return math.isnan(x) != math.isnan(y) or abs(x - y) >= TIE_TOLERANCE


def why_ranked(a: pd.Series, b: pd.Series, board: pd.DataFrame) -> str:
    """One sentence with the numbers that put router ``a`` above ``b`` (or say they tie)."""
    first, second = f"`{router_label(a, board)}`", f"`{router_label(b, board)}`"
    tied: list[str] = []
    for metric in DECIDING_METRICS:
        x, y = _score(a, metric), _score(b, metric)
        if _differs(x, y):
            same = f" after tying on {', '.join(tied)}" if tied else ""
            return f"{first} ranks above {second} on {metric} ({spoken(x)} vs {spoken(y)}){same}."
        if not math.isnan(x):
            tied.append(f"{metric} {spoken(x)}")
    shown = ", ".join(tied) if tied else "no recorded metric"
    return f"{first} and {second} tie on every headline metric ({shown})."


def tie_sentence(board: pd.DataFrame) -> str:
    """Which deciding metrics every scored router shares the same value on ('' when none)."""
    scored = board[board.apply(lambda r: not math.isnan(_score(r, PRIMARY)), axis=1)]
    if len(scored) < 2:
        return ""
    tied, separating = [], []
    for metric in DECIDING_METRICS:
        values = [v for _, r in scored.iterrows() if not math.isnan(v := _score(r, metric))]
        if values and max(values) - min(values) < TIE_TOLERANCE:
            tied.append(f"{metric} {spoken(values[0])}")
        elif values:
            separating.append(metric)
    if not tied:
        return ""
    if not separating:
        return (
            f"All {len(scored)} candidates tie on every headline metric ({', '.join(tied)}): "
            "these numbers do not separate them."
        )
    *others, last = separating
    which = f"{', '.join(others)} and {last}" if others else last
    return f"All {len(scored)} candidates tie on {', '.join(tied)}; what separates them is {which}."


def embedded_note(board: pd.DataFrame) -> str:
    """What the numbers of runs on the embedded tiny model do and do not show ('' otherwise)."""
    models = board["base_model"] if board is not None and "base_model" in board else []
    if EMBEDDED_MODEL not in list(models):
        return ""
    return (
        f"**What these numbers show.** Runs on `{EMBEDDED_MODEL}` tune the embedded tiny model "
        "(about 5 M parameters from random weights, a few hundred synthetic rows, CPU only). "
        "They show that every stage runs end to end and that tuning lowers the loss; they do not "
        "measure routing quality, so low scores, failed gates and losing to the baseline routers "
        "are expected. Routing numbers come from the Vertex params or a real checkpoint."
    )


def conclusion(board: pd.DataFrame, sig: pd.DataFrame | None, with_note: bool = True) -> str:
    """Short markdown from the numbers: which router to use and why, whether the candidates tie,
    and (``with_note``) what embedded-model runs do not show."""
    if board is None or board.empty or "kind" not in board:  # the chain on the params in use
        return (
            f"**No runs to compare yet.** Run `routerlib run {default_params_file()}` (notebooks "
            "01–04 into one run folder), or, after the CLI steps (`routerlib prepare`, `tune`, "
            "`deploy`, `evaluate --params FILE --out REPORT.json`), gather them with `routerlib "
            "record --params FILE --report REPORT.json --job NAME`."
        )
    ranked_models, ranked_bases = (  # sorted is stable: board order breaks ties
        sorted((r for _, r in board[board["kind"] == k].iterrows()), key=_rank_key, reverse=True)
        for k in ("model", "baseline")
    )
    if not ranked_models:
        return "**No tuned model has been evaluated yet**; only the baseline routers are scored."

    def describe(row: pd.Series) -> str:
        size = number(row.get("adapter_size"))
        adapter = "" if math.isnan(size) else f", adapter {size:.0f}"
        mode = str(row.get("tuning_mode") or "?") + adapter
        return f"**{row['model']}** ({row.get('base_model')}, {mode}; run `{row['run']}`)"

    def primary(row: pd.Series) -> str:
        """``<PRIMARY> 0.900 strict (95% interval …)``, or that the figure is unknown."""
        if math.isnan(value := _score(row, PRIMARY)):
            return f"{PRIMARY} unknown"
        lo, hi = number(row.get(f"{PRIMARY} strict lo")), number(row.get(f"{PRIMARY} strict hi"))
        span = "" if math.isnan(lo) or math.isnan(hi) else f" (95% interval {lo:.3f}–{hi:.3f})"
        return f"{PRIMARY} {spoken(value)} strict{span}"

    passing = [r for r in ranked_models if r["gate_pass"] is True]
    best = passing[0] if passing else ranked_models[0]
    top_base = ranked_bases[0] if ranked_bases else None
    beats_base = top_base is None or _rank_key(best) > _rank_key(top_base)
    lines: list[str] = []
    if passing:
        lines.append(
            f"Ship {describe(best)}: it passes the evaluation gate and scores {primary(best)}, "
            f"JSON valid {spoken(_score(best, 'json_valid'))}."
        )
    else:
        lines.append("**No tuned model passes the gate.**")
        if top_base is not None and not beats_base:
            lines.append(
                f"Keep the previous router `{router_label(top_base, board)}` "
                f"({PRIMARY} {spoken(_score(top_base, PRIMARY))}): no tuned model ranks above it."
            )
            lines.append(f"Closest tuned model: {describe(best)}.")
        else:
            lines.append(f"Closest: {describe(best)} with {primary(best)}.")
        if failed := _listed(best, "failed_checks"):
            lines.append(f"Its failing checks include: {failed}.")
    if skipped := _listed(best, "skipped_checks"):
        why = "the test split has no rows of that bucket, so its checks were not judged"
        lines.append(f"The gate skipped {skipped}: {why}.")
    reasons = [tie_sentence(board)]
    # One sentence per pick: the chosen model against the router it was preferred to, the
    # runner-up model, and the previous router chosen among the baselines.
    if top_base is not None:
        pair = (best, top_base) if beats_base else (top_base, best)
        reasons.append(why_ranked(*pair, board))
    others = [r for r in ranked_models if r is not best]
    if others:
        reasons.append(why_ranked(best, others[0], board))
    if len(ranked_bases) > 1:
        reasons.append(why_ranked(ranked_bases[0], ranked_bases[1], board))
    # the tested metric: the first deciding one on which the pick and the top baseline differ;
    # a test without a p-value is left out
    ref = best if top_base is None else top_base
    tested = next(
        (m for m in DECIDING_METRICS if _differs(_score(best, m), _score(ref, m))), PRIMARY
    )
    which = (best["model"], best["run"], tested)
    for _, row in sig.iterrows() if sig is not None else ():
        ours = (row["model"], row["model_run"], row["metric"]) == which
        if ours and str(row["reference"]).startswith("baseline:") and number(row["p_value"]) >= 0:
            verdict = "significant" if row["significant"] else "not significant"
            reasons.append(
                f"Against `{row['reference']}` on the same {int(row['n'])} test rows: "
                f"Δ{tested} = {row['delta']:+.3f} ({row['test']} p = {spoken(row['p_value'], 4)}, "
                f"{verdict} at {ALPHA})."
            )
    facts = [
        text.format(value)
        for column, text in (
            ("cost_usd", "estimated tuning cost ${:.2f}"),
            ("train_seconds", "train time {:.0f} s"),
            ("latency_p95_s", "latency p95 {:.2f} s"),
        )
        if not math.isnan(value := number(best.get(column)))
    ]
    if facts:
        reasons.append(f"For **{best['model']}**: " + ", ".join(facts) + ".")
    reasons = [reason for reason in (*reasons, price_note(board)) if reason]
    bullets = "\n" + "".join(f"\n- {r}" for r in reasons) if reasons else ""
    text = " ".join(line for line in lines if line) + bullets
    note = embedded_note(board) if with_note else ""
    return text + ("\n\n" + note if note else "")


# ----------------------------------------------------------------------------- quality vs cost


def pareto_front(board: pd.DataFrame) -> pd.Series:
    """True for each row no other row beats: none has at least its strict primary metric at no
    more than its serving cost and is better in one of them. Rows missing either are never on it."""
    quality, cost = f"{PRIMARY} strict", SERVING_USD
    front = pd.Series(False, index=board.index, dtype=bool)
    if board.empty or quality not in board or cost not in board:
        return front
    q = pd.to_numeric(board[quality], errors="coerce")
    c = pd.to_numeric(board[cost], errors="coerce")
    known = [i for i in board.index if not (math.isnan(q[i]) or math.isnan(c[i]))]
    for i in known:
        front[i] = not any(
            q[j] >= q[i] and c[j] <= c[i] and (q[j] > q[i] or c[j] < c[i]) for j in known
        )
    return front


def cheapest_passing(board: pd.DataFrame) -> pd.Series | None:
    """The cheapest row by serving cost whose gate passes and whose quality is known (ties: the
    better strict primary metric); None when no such row."""
    quality = f"{PRIMARY} strict"
    if board.empty or not {SERVING_USD, quality, "gate_pass"} <= set(board):
        return None
    known = board[SERVING_USD].notna() & board[quality].notna()
    priced = board[known & (board["gate_pass"] == True)]  # noqa: E712
    order = priced.sort_values([SERVING_USD, quality], ascending=[True, False])
    return None if order.empty else order.iloc[0]


def price_note(board: pd.DataFrame) -> str:
    """A sentence saying the costs rest on unverified prices, when any priced run's do ('')."""
    if board is None or board.empty or PRICES_VERIFIED not in board:
        return ""
    unverified = board[board[PRICES_VERIFIED] == False]  # noqa: E712
    if unverified.empty:
        return ""
    rows = sorted(
        {name.strip() for names in unverified.get(UNVERIFIED, []) for name in str(names).split(",")}
        - {"", "nan"}
    )
    which = f" (rows {', '.join(f'`{r}`' for r in rows)})" if rows else ""
    return (
        f"**Prices not verified:** some costs above rest on rows of routerlib's price table "
        f"(routerlib/data/pricing.yaml){which} that were not read from a Google source; check "
        "them at the source the table names before you budget by them."
    )


def cost_line(board: pd.DataFrame) -> str:
    """One sentence naming the cheapest run that passes the gate, or saying none does."""
    row = cheapest_passing(board)
    if row is None:
        return f"No priced run passes the gate (cost column `{SERVING_USD}`)."
    unverified = row.get(UNVERIFIED)
    trust = (
        f" The price is not verified ({unverified}: not read from a Google source)."
        if isinstance(unverified, str) and unverified
        else ""
    )
    return (
        f"Cheapest run that passes the gate: **{row['model']}** ({row['run']}) at "
        f"${row[SERVING_USD]:,.4f} per 1,000 routes, strict {PRIMARY} {spoken(row.get(f'{PRIMARY} strict'))}."
        + trust
    )


# ----------------------------------------------------------------------------- sweeps


def sweep_board(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows of the newest sweep under the outputs root with its varied keys as
    the first columns, best first. Empty when there is no sweep."""
    folders = runfolder.find_folders(runfolder.SWEEP_FILE)[-1:]
    if not folders or board.empty:
        return pd.DataFrame()
    record = runfolder.read_sweep(folders[0])
    keys = record.varied_keys() or list(record.grid)
    by_run = {Path(p.run_dir).name: p.values for p in record.points if p.run_dir is not None}
    rows = board[(board["kind"] == "model") & board["run"].isin(list(by_run))]
    # a varied key that is a leaderboard column already (adapter_size, say) moves to the front
    rows = rows.drop(columns=keys, errors="ignore")
    for position, key in enumerate(keys):
        rows.insert(position, key, [by_run[r].get(key) for r in rows["run"]])
    rows.attrs["sweep"] = record.sweep
    rows.attrs["varied_keys"] = keys
    return rows.reset_index(drop=True)
