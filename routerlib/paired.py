"""The paired comparison of two routers on the same test rows (docs/scoring.md): routerlib's one
paired test, and the ``comparison`` block of two scored prediction files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from routerlib import stats
from routerlib.errors import InputError
from routerlib.metric_names import LOWER_IS_BETTER, RATE_METRICS

#: Resamples of the paired bootstrap.
N_BOOT = 2000


def _good(metric: str, value: float) -> bool:
    """A hit: the value is true, or off for a lower-is-better flag."""
    return (not value) if metric in LOWER_IS_BETTER else bool(value)


def paired_test(
    previous: Sequence[float], new: Sequence[float], metric: str, *, seed: int = 0
) -> dict[str, Any]:
    """The paired test of ``previous`` against ``new``, the strict per-sample values of one metric
    on the same rows in the same order: ``delta`` (new - previous) with its 95% paired bootstrap
    ``ci_low``/``ci_high``; ``test`` McNemar on hits for yes/no metrics (``b01`` fixed, ``b10``
    broken), else the bootstrap (``b01``/``b10`` None), with its ``p_value``."""
    boot = stats.paired_bootstrap(previous, new, n=N_BOOT, seed=seed)
    binary = metric not in RATE_METRICS and all(v in (0.0, 1.0) for v in (*previous, *new))
    if not binary:
        return {"test": "paired_bootstrap", **boot, "b01": None, "b10": None}
    test = stats.mcnemar([_good(metric, v) for v in previous], [_good(metric, v) for v in new])
    return {"test": "mcnemar", **test, **{k: boot[k] for k in ("delta", "ci_low", "ci_high")}}


def _deltas(new: dict[str, dict[str, Any]], old: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bucket in sorted(set(new) | set(old)):
        a, b = old.get(bucket, {}), new.get(bucket, {})
        rows = {}
        for name in sorted((set(a) | set(b)) - {"samples"}):
            n_val, p_val = b.get(name), a.get(name)
            delta = n_val - p_val if n_val is not None and p_val is not None else None
            rows[name] = {"new": n_val, "previous": p_val, "delta": delta}
        out[bucket] = rows
    return out


def compare_scored(
    new: tuple[dict[str, Any], list[dict[str, Any]]],
    previous: tuple[dict[str, Any], list[dict[str, Any]]],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The comparison block of two scored prediction files on the same gold: each a
    ``(report, records)`` pair as ``metrics.score_files`` builds it."""
    (new_report, new_records), (old_report, old_records) = new, previous
    if len(new_records) != len(old_records):
        raise InputError(
            f"cannot compare {len(new_records)} predictions with {len(old_records)} previous ones"
        )
    result: dict[str, Any] = {
        block: _deltas(new_report.get(block) or {}, old_report.get(block) or {})
        for block in ("metrics", "strict", "extra")
    }
    pairs = list(zip(old_records, new_records, strict=True))
    names = sorted({name for record in new_records for name in record["strict"]})
    changes: dict[str, dict[str, list[int]]] = {}
    for name in (n for n in names if n not in RATE_METRICS):
        hits = [
            (_good(name, o["strict"][name]), _good(name, c["strict"][name]), c["index"])
            for o, c in pairs
            if name in c["strict"] and name in o["strict"]
        ]
        changes[name] = {
            "fixed": [i for was, now, i in hits if now and not was],
            "broken": [i for was, now, i in hits if was and not now],
        }
    result["changes"] = changes
    significance: dict[str, dict[str, Any]] = {}
    for bucket in sorted({bucket for record in new_records for bucket in record["buckets"]}):
        significance[bucket] = {}
        for name in names:
            both = [
                (float(o["strict"][name]), float(c["strict"][name]))
                for o, c in pairs
                if bucket in c["buckets"] and name in o["strict"]
            ]
            if both:
                a, b = zip(*both, strict=True)
                significance[bucket][name] = paired_test(list(a), list(b), name, seed=seed)
    result["significance"] = significance
    return result
