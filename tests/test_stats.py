"""McNemar and bootstrap against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from routerlib.stats import bootstrap_ci, mcnemar, paired_bootstrap


def test_mcnemar_exact_small_counts() -> None:
    # b01 = 1 (a miss -> b hit), b10 = 5 (a hit -> b miss), 4 concordant pairs.
    a = [False] + [True] * 5 + [True, True, False, False]
    b = [True] + [False] * 5 + [True, True, False, False]
    got = mcnemar(a, b)
    assert (got["b01"], got["b10"], got["method"]) == (1, 5, "exact")
    # two-sided binomial, n = 6, k = 1: 2 * (C(6,0) + C(6,1)) / 2^6 = 2 * 7 / 64
    assert got["p_value"] == pytest.approx(14 / 64)


def test_mcnemar_no_discordant_pairs() -> None:
    got = mcnemar([True, False], [True, False])
    assert (got["b01"], got["b10"], got["p_value"]) == (0, 0, 1.0)


def test_mcnemar_balanced_exact_is_one() -> None:
    # b01 = b10 = 3: 2 * (1 + 6 + 15 + 20) / 64 = 84 / 64, capped at 1.
    a = [False] * 3 + [True] * 3
    b = [True] * 3 + [False] * 3
    assert mcnemar(a, b)["p_value"] == 1.0


def test_mcnemar_chi_square_large_counts() -> None:
    # b01 = 30, b10 = 10: (|30 - 10| - 1)^2 / 40 = 361 / 40 = 9.025;
    # p = P(chi2_1 > 9.025) = erfc(sqrt(9.025 / 2)) ~= 0.002663
    a = [False] * 30 + [True] * 10 + [True] * 5
    b = [True] * 30 + [False] * 10 + [True] * 5
    got = mcnemar(a, b)
    assert got["method"] == "chi2-cc"
    assert got["statistic"] == pytest.approx(9.025)
    assert got["p_value"] == pytest.approx(0.0026635, rel=1e-3)


def test_mcnemar_length_mismatch() -> None:
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_bootstrap_ci_constant_and_empty() -> None:
    assert bootstrap_ci([0.5] * 7, n=200, seed=1) == (0.5, 0.5)
    lo, hi = bootstrap_ci([], n=10, seed=0)
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_ci_proportion_brackets_mean_and_is_seeded() -> None:
    values = [1.0] * 30 + [0.0] * 70  # mean 0.3, normal-approx 95% half-width ~ 0.09
    lo, hi = bootstrap_ci(values, n=2000, seed=3)
    assert 0.19 < lo < 0.3 < hi < 0.41
    assert bootstrap_ci(values, n=2000, seed=3) == (lo, hi)
    # the interval can only hold resampled means, which are multiples of 1/100
    assert round(lo * 100, 9) == int(round(lo * 100))


def test_paired_bootstrap_identical_and_constant_shift() -> None:
    same = paired_bootstrap([0.1, 0.5, 0.9], [0.1, 0.5, 0.9], n=500, seed=0)
    assert same == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    shift = paired_bootstrap([0.0, 0.25, 0.5], [0.5, 0.75, 1.0], n=999, seed=0)
    assert shift["delta"] == pytest.approx(0.5)
    assert shift["ci_low"] == pytest.approx(0.5) and shift["ci_high"] == pytest.approx(0.5)
    # every resampled difference equals delta: none is as far from delta as |delta| -> 1/(n+1)
    assert shift["p_value"] == pytest.approx(1 / 1000)


def test_paired_bootstrap_noisy_difference() -> None:
    a = [0.0] * 20
    b = [1.0] * 10 + [0.0] * 10  # delta 0.5, sd of the mean diff ~ 0.112
    got = paired_bootstrap(a, b, n=2000, seed=0)
    assert got["delta"] == 0.5
    assert 0.25 < got["ci_low"] < 0.5 < got["ci_high"] < 0.75
    assert got["p_value"] < 0.01
    none = paired_bootstrap([1.0, 0.0] * 10, [0.0, 1.0] * 10, n=2000, seed=0)
    assert none["delta"] == 0.0 and none["p_value"] == 1.0
