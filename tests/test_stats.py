"""Tests of tune_selcopy.analysis.stats: each statistic against scipy, brute force or a closed form."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from tune_selcopy.analysis import stats as st


def test_holm_known_values_and_nan():
    adj = st.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    np.testing.assert_allclose(adj[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adj[4])
    assert st.holm([0.6, 0.9]).tolist() == [1.0, 1.0]
    assert st.holm_if([0.01, 0.04, 0.03], 1, 0.001) == pytest.approx(0.003)  # now the smallest of 3


def test_small_statistics():
    assert st.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # cuts 2 from each end
    assert st.iqm([1, 2, 3, 100]) == 2.5
    low, high = st.mean_ci([1, 2, 3, 4, 5])
    assert low == pytest.approx(3 - 2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert high == pytest.approx(3 + 2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert all(math.isnan(v) for v in st.mean_ci([1.0]))
    assert st.mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert math.isnan(st.sample_std([1.0]))
    assert st.finite([1.0, math.nan, 2.0, math.inf]).tolist() == [1.0, 2.0]
    assert st.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).pvalue == pytest.approx(2 / 252)
    assert st.mann_whitney([1, 2], [3, 2]).statistic == 0.5  # pairs x > y: one tie counting half
    assert st.mann_whitney([3.0, 3.0], [3.0, 3.0]).pvalue == 1.0
    assert math.isnan(st.welch_p([1.0], [2.0, 3.0]))
    assert st.welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0 and st.welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert st.seeds_for_possible_rejection(1, 0.05) == 4  # 2/70 <= 0.05 < 2/20
    assert st.seeds_for_possible_rejection(15, 0.05) == 6  # 2/924 <= 0.0033 < 2/252
    assert st.seeds_for_possible_rejection(120, 0.05) == 8  # 2/12870 <= 0.00042 < 2/3432


def test_batched_tests_equal_one_call_per_pair():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(n) for n in (5, 5, 3, 5)]
    ys = [rng.standard_normal(n) for n in (5, 4, 3, 5)]
    ys[3] = np.round(ys[3])  # a tied pair in the same size group as an untied one
    xs[3] = np.round(xs[3])
    got = st.batched(st.mann_whitney, xs, ys)
    for (u, p), x, y in zip(got, xs, ys):
        ref = st.mann_whitney(x, y)
        assert (u, p) == (pytest.approx(float(ref.statistic)), pytest.approx(float(ref.pvalue)))
    assert st.batched(st.welch_p, xs, ys) == pytest.approx(
        [stats.ttest_ind(x, y, equal_var=False).pvalue for x, y in zip(xs, ys)])
    means = st.batched(lambda a: a.mean(axis=-1), xs)
    assert means == pytest.approx([x.mean() for x in xs])


def test_mann_whitney_with_ties_is_exact_permutation():
    a, b = [1, 2, 2, 3, 4], [2, 5, 6, 7, 8]
    both = np.array(a + b, dtype=float)
    ranks = stats.rankdata(both)
    observed = abs(ranks[:5].sum() - 27.5)
    splits = [abs(ranks[list(c)].sum() - 27.5) for c in itertools.combinations(range(10), 5)]
    exact = sum(s >= observed - 1e-12 for s in splits) / len(splits)
    assert st.mann_whitney(a, b).pvalue == pytest.approx(exact)


def _every_split_p(values: list[float], n1: int) -> float:
    """The smallest p of the same test over every assignment of the pooled values."""
    pooled = np.array(values, dtype=float)
    firsts = [list(c) for c in itertools.combinations(range(pooled.size), n1)]
    rests = [[i for i in range(pooled.size) if i not in c] for c in firsts]
    return float(st.mann_whitney(pooled[firsts], pooled[rests]).pvalue.min())


@pytest.mark.parametrize("values", [
    [0.1, 0.4, 0.2, 0.9, 0.3, 0.5, 0.6, 0.8, 0.7, 1.0],  # untied: 2/252
    [0, 0, 0, 0, 0, 0, 1.5, 2, 3, 4],  # six zeros (a solved task's error rates)
    [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],  # every value twice (a setting against a copy of itself)
])
def test_smallest_reachable_p_is_the_minimum_over_every_split(values):
    x, y = values[:5], values[5:]
    assert st.smallest_reachable_p(x, y) == pytest.approx(_every_split_p(values, 5))
    if len(set(values)) == len(values):
        assert st.smallest_reachable_p(x, y) == pytest.approx(2 / 252)
    else:
        assert st.smallest_reachable_p(x, y) > 2 / 252  # ties raise the floor
    assert st.smallest_reachable_p([2.0, 2.0], [2.0, 2.0, 2.0]) == 1.0


def test_smallest_reachable_p_with_the_normal_approximation():
    # 10 vs 10 with ties: C(20, 10) > 20,000 splits, so the test is the tie-corrected normal
    # approximation; its floor is that approximation at complete separation, not 2 / C(20, 10).
    x, y = [0.0] * 6 + [1, 2, 3, 4], [0.0] * 4 + [5, 6, 7, 8, 9, 10]
    pooled = np.sort(np.array(x + y))
    expected = stats.mannwhitneyu(pooled[:10], pooled[10:], method="asymptotic").pvalue
    assert st.smallest_reachable_p(x, y) == pytest.approx(expected)
    assert expected > 2 / math.comb(20, 10)


def test_detectable_shift_has_the_stated_power():
    # The shift found with 80% power by the exact test at 0.05 for 10 vs 10 seeds, checked by
    # an independent simulation with other draws.
    d = st.detectable_shift(10, 10, 0.05)
    assert 1.1 < d < 1.5  # the t-test's is 1.33; the rank test needs about 5% more
    rng = np.random.default_rng(12345)
    x, y = rng.standard_normal((4000, 10)), rng.standard_normal((4000, 10)) + d
    assert (st.mann_whitney(x, y).pvalue <= 0.05).mean() == pytest.approx(0.8, abs=0.03)
    assert st.detectable_shift(5, 5, 2 / 252 / 2) == math.inf  # below the smallest reachable p


def test_welch_detectable_difference_matches_the_noncentral_t():
    delta = st.welch_detectable_difference(1.0, 10, 2.0, 8, 0.05)
    se = math.sqrt(1 / 10 + 4 / 8)
    df = (1 / 10 + 4 / 8) ** 2 / ((1 / 10) ** 2 / 9 + (4 / 8) ** 2 / 7)
    crit = stats.t.ppf(0.975, df)
    power = stats.nct.sf(crit, df, delta / se) + stats.nct.cdf(-crit, df, delta / se)
    assert power == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(7)
    x, y = rng.normal(0, 1, (4000, 10)), rng.normal(delta, 2, (4000, 8))
    assert (st.welch_p(x, y) <= 0.05).mean() == pytest.approx(0.8, abs=0.03)
    assert math.isnan(st.welch_detectable_difference(1.0, 1, 1.0, 5, 0.05))


@pytest.mark.parametrize("std1,n1,std2,n2,level", [
    (1.47, 2, 1.85, 10, 0.0125),  # a 2-seed sweep against a published table of 10 seeds: ~1.7 df
    (1.0, 2, 1.0, 2, 0.05 / 4),  # 2 vs 2 seeds: 2 df
    (0.5, 3, 1.85, 10, 0.0125),
    (3.0, 2, 0.1, 2, 0.01),  # one side's spread dominates: ~1 df
])
def test_welch_detectable_difference_at_one_or_two_degrees_of_freedom(std1, n1, std2, n2, level):
    """scipy's nct.cdf returns NaN far in the lower tail at ~1 df; the power must not."""
    delta = st.welch_detectable_difference(std1, n1, std2, n2, level)
    assert math.isfinite(delta) and delta > 0
    v1, v2 = std1**2 / n1, std2**2 / n2
    se, df = math.sqrt(v1 + v2), (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    crit = stats.t.ppf(1 - level / 2, df)
    # the power as a chi-square mixture of normals, computed without scipy's nct:
    # P(|Z + nc| > c sqrt(V / df)), V ~ chi2(df)
    v = stats.chi2.ppf((np.arange(200_000) + 0.5) / 200_000, df)
    scale = crit * np.sqrt(v / df)
    nc = delta / se
    power = np.mean(stats.norm.sf(scale - nc) + stats.norm.cdf(-scale - nc))
    assert power == pytest.approx(0.8, abs=2e-3)


def test_welch_detectable_difference_is_undefined_only_without_two_seeds_or_spread():
    assert math.isnan(st.welch_detectable_difference(1.0, 1, 1.0, 10, 0.05))
    assert math.isnan(st.welch_detectable_difference(0.0, 3, 0.0, 10, 0.05))
    assert math.isfinite(st.welch_detectable_difference(0.0, 3, 1.0, 10, 0.05))


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy on the constant sample below
def test_iqm_ci_is_the_trimmed_t_interval():
    x = np.array([0.5, 3.0, 1.0, 9.0, 2.0, 1.5, 2.5, 0.1])  # n = 8: 2 cut from each end
    low, high = st.iqm_ci(x)
    s = np.sort(x)
    w = np.clip(s, s[2], s[5])  # winsorized: 1.0 1.0 1.0 1.5 2.0 2.5 2.5 2.5
    se = math.sqrt(7 * np.var(w, ddof=1) / (4 * 3))
    t = stats.t.ppf(0.975, 3)
    assert (low, high) == (pytest.approx(st.iqm(x) - t * se), pytest.approx(st.iqm(x) + t * se))
    # scipy's Yuen trimmed t-test against a constant sample at either end gives p = 0.05
    for end in (low, high):
        assert stats.ttest_ind(x, np.full(8, end), trim=0.25, equal_var=False).pvalue == pytest.approx(0.05)
    assert st.iqm_ci([1.0, 2.0, 4.0]) == pytest.approx(st.mean_ci([1.0, 2.0, 4.0]))  # nothing cut below 4 seeds
    assert all(math.isnan(v) for v in st.iqm_ci([1.0]))
    assert st.iqm_ci([2.0, 2.0, 2.0, 2.0, 7.0]) == (2.0, 2.0)  # the winsorized values are all equal
    rows = np.array([[1.0, 2, 3, 4, 5], [2, 2, 5, 6, 9]])
    assert [tuple(c) for c in np.transpose(st.iqm_ci(rows))] == [pytest.approx(st.iqm_ci(r)) for r in rows]


def test_iqm_ci_covers():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 5))  # the IQM of N(0, 1) is 0
    low, high = st.iqm_ci(x)
    assert ((low <= 0) & (0 <= high)).mean() == pytest.approx(0.95, abs=0.015)


def test_improvement_ci_solves_the_score_equation():
    p = np.array([0.0, 0.2, 0.56, 0.76, 1.0])
    low, high = st.improvement_ci(p, 5, 5)
    z2 = stats.norm.ppf(0.975) ** 2

    def var(t):
        return t * (1 - t) / 25 * (1 + 4 * ((1 - t) / (2 - t) + t / (1 + t)))

    for lo, hi, est in zip(low, high, p):
        assert lo <= est <= hi
        for end in (lo, hi):
            if end not in (0.0, 1.0) or end != est:
                assert (end - est) ** 2 == pytest.approx(z2 * var(end), abs=1e-12)
    assert (low[0], high[-1]) == (0.0, 1.0)
    assert 0.6 < low[-1] < 0.7  # complete separation of 5 vs 5: not the bootstrap's [1, 1]
    # symmetric: the interval of 1 - p is 1 minus the interval of p
    flipped = st.improvement_ci(1 - p, 5, 5)
    np.testing.assert_allclose(flipped[0], 1 - high, atol=1e-12)
    np.testing.assert_allclose(flipped[1], 1 - low, atol=1e-12)
    assert st.improvement_ci(0.5, 10, 10)[1] - st.improvement_ci(0.5, 10, 10)[0] < high[2] - low[2]


@pytest.mark.parametrize("n", [5, 10])
@pytest.mark.parametrize("shift", [0.0, 1.5, 3.0])
def test_improvement_ci_covers(n, shift):
    """The interval's coverage of P(X < Y) for n vs n normal seeds, the second shifted."""
    rng = np.random.default_rng([n, int(10 * shift)])
    x, y = rng.standard_normal((2000, n)), rng.standard_normal((2000, n)) + shift
    p = st.mann_whitney(y, x).statistic / (n * n)  # pairs y > x, ties half
    low, high = st.improvement_ci(p, n, n)
    theta = stats.norm.cdf(shift / math.sqrt(2))
    assert ((low <= theta) & (theta <= high)).mean() >= 0.93
