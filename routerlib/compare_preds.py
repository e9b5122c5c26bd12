"""Regression check of a prediction file against a previous one (``--compare-to PREV_PREDS``).

Both files are scored against the same gold. The comparison holds:

* ``metrics`` / ``strict`` / ``extra``: per bucket, per metric ``{new, previous, delta}`` with
  ``delta = new - previous`` (a metric present on one side only has ``delta`` null);
* ``changes``: for every binary strict metric over all samples, the indices ``fixed`` (the previous
  prediction missed, the new one hits) and ``broken`` (the reverse). For the lower-is-better flags
  (``length_ratio_gt_1.1`` …) "hit" means the flag is off;
* ``significance``: per bucket, per strict metric, on the paired strict per-sample values —
  McNemar (``stats.mcnemar``, previous as ``a``, new as ``b``, on "hit" values so ``b01`` counts
  fixed samples and ``b10`` broken ones) for binary metrics, paired bootstrap
  (``stats.paired_bootstrap``, delta = new - previous) for the rates.
Strict values are used for pairing because they exist for every sample, valid or not.
"""

from __future__ import annotations

import os
from typing import Any

from routerlib.errors import InputError
from routerlib.metrics import LOWER_IS_BETTER, RATE_METRICS, aggregate, score_pred_file
from routerlib.stats import mcnemar, paired_bootstrap


def load_records(
    gold_path: str | os.PathLike[str], pred_path: str | os.PathLike[str]
) -> list[dict[str, Any]]:
    """Per-sample records of ``pred_path`` scored against ``gold_path``."""
    return score_pred_file(gold_path, pred_path)[0]


def _deltas(new: dict[str, dict[str, Any]], old: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bucket in sorted(set(new) | set(old)):
        a, b = old.get(bucket, {}), new.get(bucket, {})
        rows = {}
        for name in sorted(set(a) | set(b)):
            if name == "samples":
                continue
            n_val, p_val = b.get(name), a.get(name)
            delta = n_val - p_val if n_val is not None and p_val is not None else None
            rows[name] = {"new": n_val, "previous": p_val, "delta": delta}
        out[bucket] = rows
    return out


def _good(name: str, value: Any) -> bool:
    return (not value) if name in LOWER_IS_BETTER else bool(value)


def compare_records(
    new: list[dict[str, Any]], previous: list[dict[str, Any]], *, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """The comparison of two aligned per-sample record lists (same gold)."""
    if len(new) != len(previous):
        raise InputError(
            f"cannot compare {len(new)} predictions with {len(previous)} previous ones"
        )
    result: dict[str, Any] = {
        "metrics": _deltas(aggregate(new, "metrics"), aggregate(previous, "metrics")),
        "strict": _deltas(aggregate(new, "strict"), aggregate(previous, "strict")),
        "extra": _deltas(aggregate(new, "extra"), aggregate(previous, "extra")),
    }
    names = sorted({name for record in new for name in record["strict"]})
    binary = [name for name in names if name not in RATE_METRICS]
    changes: dict[str, dict[str, list[int]]] = {}
    for name in binary:
        fixed, broken = [], []
        for rec_new, rec_old in zip(new, previous, strict=True):
            if name not in rec_new["strict"] or name not in rec_old["strict"]:
                continue
            was, now = _good(name, rec_old["strict"][name]), _good(name, rec_new["strict"][name])
            if now and not was:
                fixed.append(rec_new["index"])
            elif was and not now:
                broken.append(rec_new["index"])
        changes[name] = {"fixed": fixed, "broken": broken}
    result["changes"] = changes

    significance: dict[str, dict[str, Any]] = {}
    buckets = sorted({bucket for record in new for bucket in record["buckets"]})
    for bucket in buckets:
        pairs = [
            (old, cur) for cur, old in zip(new, previous, strict=True) if bucket in cur["buckets"]
        ]
        tests: dict[str, Any] = {}
        for name in names:
            a = [old["strict"][name] for old, cur in pairs if name in old["strict"]]
            b = [cur["strict"][name] for old, cur in pairs if name in old["strict"]]
            if not a:
                continue
            if name in RATE_METRICS:
                tests[name] = {"test": "paired_bootstrap", **paired_bootstrap(a, b, n_boot, seed)}
            else:
                good_a = [_good(name, x) for x in a]
                good_b = [_good(name, x) for x in b]
                tests[name] = {"test": "mcnemar", **mcnemar(good_a, good_b)}
        significance[bucket] = tests
    result["significance"] = significance
    return result


def compare_predictions(
    gold_path: str | os.PathLike[str],
    pred_path: str | os.PathLike[str],
    prev_pred_path: str | os.PathLike[str],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare ``pred_path`` with ``prev_pred_path`` on the same gold (see module docstring)."""
    result = compare_records(
        load_records(gold_path, pred_path), load_records(gold_path, prev_pred_path), seed=seed
    )
    result["previous_pred_path"] = str(prev_pred_path)
    return result
