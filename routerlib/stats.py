"""Small statistics for evaluation reports: bootstrap intervals and paired tests (numpy only). In
the paired functions ``a`` is the *before* system and ``b`` the *after* one, sample by sample."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Below this many discordant pairs McNemar uses the exact binomial test.
MCNEMAR_EXACT_BELOW = 25
#: The level of every interval here (reports record it beside their intervals).
LEVEL = 0.95


def _resampled_means(values: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, float, float]:
    """The means of ``n`` seeded resamples of ``values`` and their percentile interval."""
    idx = np.random.default_rng(seed).integers(0, values.size, size=(n, values.size))
    means = values[idx].mean(axis=1)
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return means, float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float] | Sequence[bool], n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Seeded percentile bootstrap interval of the mean of ``values``; (nan, nan) for none."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0 or n <= 0:
        return (math.nan, math.nan)
    return _resampled_means(arr, n, seed)[1:]


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float | int | str]:
    """McNemar's test on paired binary outcomes: ``b01`` pairs ``a`` failed and ``b`` passed
    (fixed), ``b10`` the reverse (broken); the exact two-sided binomial test below
    MCNEMAR_EXACT_BELOW discordant pairs, else chi-square with continuity correction on 1 df."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    b01 = sum(1 for x, y in zip(a, b, strict=True) if not x and y)
    b10 = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    n = b01 + b10
    if n < MCNEMAR_EXACT_BELOW:  # two-sided binomial, b01 of n at 1/2 (p = 1 when n is 0)
        tail = sum(math.comb(n, i) for i in range(min(b01, b10) + 1)) / 2.0**n
        return {"b01": b01, "b10": b10, "p_value": min(1.0, 2.0 * tail), "method": "exact"}
    stat = (abs(b01 - b10) - 1.0) ** 2 / n
    p_value = math.erfc(math.sqrt(stat / 2.0))  # chi-square(1) survival function
    return {"b01": b01, "b10": b10, "p_value": p_value, "method": "chi2-cc", "statistic": stat}


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap (the same indices for both systems) of ``mean(b) - mean(a)``: percentile
    ``ci_low``/``ci_high`` and a two-sided ``p_value`` from the differences shifted to mean zero,
    ``(1 + #{|d* - delta| >= |delta|}) / (n + 1)`` (1.0 when delta is 0)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size != xb.size:
        raise ValueError(f"paired samples differ in length: {xa.size} vs {xb.size}")
    if xa.size == 0:
        return {"delta": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    diff = xb - xa
    delta = float(diff.mean())
    boots, lo, hi = _resampled_means(diff, n, seed)
    # A tolerance keeps float noise in the resampled means from deciding ties.
    tol = 1e-12
    extreme = int(np.count_nonzero(np.abs(boots - delta) >= abs(delta) - tol))
    p_value = 1.0 if abs(delta) <= tol else min(1.0, (1 + extreme) / (n + 1))
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "p_value": p_value}
