"""The statistics behind the verdicts: small pure functions over arrays of per-seed values.

Shapes: a *sample* is a 1-D array of the finite per-seed values of one setting. Every
function is batched over rows: the one-sample statistics take ``x`` of shape ``(m, n)``
(m samples of n seeds) and the two-sample tests ``x`` of shape ``(m, n1)`` and ``y`` of
shape ``(m, n2)`` (m pairs); both return shape ``(m,)``, and 1-D inputs give 0-d
results. ``batched`` runs them over samples of unequal sizes. scipy does the
arithmetic wherever it has it; what is written here is the choice of method and the
questions scipy does not answer directly (the smallest reachable p, Holm, the intervals of
the IQM and of the probability of improvement).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

#: Up to this many splits of the pooled seeds, a tied Mann-Whitney test enumerates them all.
EXACT_SPLITS = 20_000
#: Monte-Carlo draws for the power of the Mann-Whitney test (seeded: the answer is fixed).
POWER_DRAWS = 2_000


def finite(x) -> np.ndarray:
    """The finite values of ``x`` as a flat float array (NaN seeds dropped)."""
    a = np.asarray(x, dtype=float).ravel()
    return a[np.isfinite(a)]


def sample_std(x) -> np.ndarray:
    """Sample standard deviation (ddof 1) of samples ``x`` (m, n) -> (m,); NaN for n < 2."""
    x, one = _rows1(x)
    if x.shape[-1] < 2:
        return _unrows(np.full(x.shape[0], math.nan), one)
    return _unrows(np.std(x, axis=-1, ddof=1), one)


def iqm(x) -> np.ndarray:
    """Interquartile mean of samples ``x`` (m, n) -> (m,): the mean of the middle 50%.

    ``scipy.stats.trim_mean(x, 0.25)``, as in rliable: ``int(0.25 * n)`` values are cut
    from each end (none for n < 4, one each for n = 4..7, two for n = 8..11).
    """
    x, one = _rows1(x)
    return _unrows(np.asarray(stats.trim_mean(x, 0.25, axis=-1), dtype=float), one)


def mean_ci(x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student-t confidence interval ``(low, high)`` of the mean of samples ``x`` (m, n).

    ``scipy.stats.t.interval(level, n - 1, mean, std(ddof=1) / sqrt(n))``, each (m,). A t
    interval (not a bootstrap) because with 5-10 seeds a bootstrap interval is too narrow.
    NaN for n < 2; ``(mean, mean)`` where every value is equal.
    """
    x, one = _rows1(x)
    n = x.shape[-1]
    if n < 2:
        nan = np.full(x.shape[0], math.nan)
        return _unrows(nan, one), _unrows(nan, one)
    m, sem = x.mean(axis=-1), stats.sem(x, axis=-1)
    spread = sem > 0
    low, high = m.copy(), m.copy()
    if spread.any():
        low[spread], high[spread] = stats.t.interval(level, n - 1, loc=m[spread], scale=sem[spread])
    return _unrows(low, one), _unrows(high, one)


def iqm_ci(x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed-t confidence interval ``(low, high)`` of the IQM of samples ``x`` (m, n).

    The Tukey-McLaughlin interval of the trimmed mean, with Yuen's standard error (as
    ``scipy.stats.ttest_ind(..., trim=0.25)`` uses it): with ``g = int(0.25 * n)`` values
    cut from each end (as ``iqm``) and ``h = n - 2g`` left, ``iqm +- t(h - 1) * se``,
    ``se^2 = (n - 1) s_w^2 / (h (h - 1))``, s_w^2 the sample variance of the winsorized
    values (the g smallest set to the next one up, the g largest to the next one down).
    For n < 4 nothing is cut and it is ``mean_ci``. NaN for n < 2, ``(iqm, iqm)`` where
    the winsorized values are all equal. Not a bootstrap: over 3-10 seeds a bootstrap
    interval of the IQM covers 74-94% instead of 95% (docs/analysis.md).
    """
    x, one = _rows1(x)
    n = x.shape[-1]
    if n < 2:
        nan = np.full(x.shape[0], math.nan)
        return _unrows(nan, one), _unrows(nan, one)
    g = int(0.25 * n)
    h = n - 2 * g
    s = np.sort(x, axis=-1)
    winsorized = np.clip(s, s[:, g : g + 1], s[:, n - g - 1 : n - g])
    center = s[:, g : n - g].mean(axis=-1)
    se = np.sqrt((n - 1) * np.var(winsorized, axis=-1, ddof=1) / (h * (h - 1)))
    half = stats.t.ppf((1 + level) / 2, h - 1) * se
    return _unrows(center - half, one), _unrows(center + half, one)


def improvement_ci(p, n1: int, n2: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval ``(low, high)`` of a probability of improvement, each shaped as ``p``.

    ``p`` (m,): estimates of theta = P(a seed of setting 1 beats a seed of setting 2), ties
    counting half (Mann-Whitney U / (n1 n2)), from n1 and n2 seeds. Newcombe's score
    interval ("method 5", Statistics in Medicine 25, 2006): the two roots in [0, 1] of
    ``(t - p)^2 = z^2 V(t)``, ``V(t) = t (1 - t) / (n1 n2) * (1 + (N - 1) ((1 - t) / (2 - t)
    + t / (1 + t)))``, ``N = (n1 + n2) / 2``, z the normal quantile of ``level``; found by
    bisection (60 halvings, vectorized). It needs no resampling and, unlike a bootstrap,
    does not collapse to ``[1, 1]`` when every seed of one setting beats every seed of the
    other; its coverage over 3-10 seeds is in docs/analysis.md.
    """
    theta = np.asarray(p, dtype=float)
    z2 = stats.norm.ppf((1 + level) / 2) ** 2
    half_n = (n1 + n2) / 2

    def excess(t: np.ndarray) -> np.ndarray:  # < 0 inside the interval, > 0 outside
        var = t * (1 - t) / (n1 * n2) * (1 + (half_n - 1) * ((1 - t) / (2 - t) + t / (1 + t)))
        return (t - theta) ** 2 - z2 * var

    def root(outside: np.ndarray, inside: np.ndarray) -> np.ndarray:
        for _ in range(60):
            mid = (outside + inside) / 2
            out = excess(mid) > 0
            outside, inside = np.where(out, mid, outside), np.where(out, inside, mid)
        return (outside + inside) / 2

    # theta itself is inside (excess -z^2 V <= 0), 0 and 1 are outside unless theta is there
    low = np.where(theta <= 0, 0.0, root(np.zeros_like(theta), theta))
    high = np.where(theta >= 1, 1.0, root(np.ones_like(theta), theta))
    return low, high


def _rows(x, y) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both samples as 2-D float arrays (one pair per row), and whether they were 1-D."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return np.atleast_2d(x), np.atleast_2d(y), x.ndim == 1


def _rows1(x) -> tuple[np.ndarray, bool]:
    """One sample per row as a 2-D float array, and whether it was 1-D."""
    x = np.asarray(x, dtype=float)
    return np.atleast_2d(x), x.ndim == 1


def _unrows(values: np.ndarray, one: bool) -> np.ndarray:
    return values[0] if one else values


class MannWhitney(NamedTuple):
    """U statistic of the first sample (pairs ``x > y``, ties counting half) and two-sided p."""

    statistic: np.ndarray
    pvalue: np.ndarray


def mann_whitney(x, y) -> MannWhitney:
    """Two-sided Mann-Whitney U test of ``x`` (m, n1) against ``y`` (m, n2), row by row.

    Per row: exact (``method='exact'``) without ties; with ties an exact permutation test
    over all ``C(n1 + n2, n1)`` splits when there are at most ``EXACT_SPLITS`` of them,
    else the tie-corrected normal approximation. A row whose pooled values are all equal
    has U = n1 n2 / 2 and p = 1. ``statistic / (n1 n2)`` is the probability that a value
    of x exceeds a value of y (ties counting half).
    """
    x, y, one = _rows(x, y)
    n1, n2 = x.shape[-1], y.shape[-1]
    pooled = np.sort(np.concatenate([x, y], axis=-1), axis=-1)
    ties = (np.diff(pooled, axis=-1) == 0).any(axis=-1)
    constant = pooled[:, 0] == pooled[:, -1]
    u = np.full(x.shape[0], n1 * n2 / 2)
    p = np.ones(x.shape[0])
    tied_method = (
        stats.PermutationMethod(n_resamples=EXACT_SPLITS)
        if math.comb(n1 + n2, n1) <= EXACT_SPLITS
        else "asymptotic"
    )
    for rows, method in ((~ties, "exact"), (ties & ~constant, tied_method)):
        if rows.any():
            res = stats.mannwhitneyu(x[rows], y[rows], alternative="two-sided", method=method, axis=-1)
            u[rows], p[rows] = res.statistic, np.minimum(1.0, res.pvalue)
    return MannWhitney(_unrows(u, one), _unrows(p, one))


def welch_p(x, y) -> np.ndarray:
    """Two-sided p-value of Welch's t-test (unequal variances), ``x`` (m, n1) vs ``y`` (m, n2).

    NaN when n1 or n2 is below 2. Where both samples of a row are constant the test is
    undefined; p is then 1 for equal values and 0 for different ones.
    """
    x, y, one = _rows(x, y)
    if x.shape[-1] < 2 or y.shape[-1] < 2:
        return _unrows(np.full(x.shape[0], math.nan), one)
    with warnings.catch_warnings():
        # Near-constant samples (every seed at 100% error) make scipy warn about precision
        # loss; the p-value is still the right answer to report.
        warnings.simplefilter("ignore", RuntimeWarning)
        p = np.asarray(stats.ttest_ind(x, y, axis=-1, equal_var=False).pvalue, dtype=float)
    constant = (np.ptp(x, axis=-1) == 0) & (np.ptp(y, axis=-1) == 0)
    p = np.where(constant, np.where(x[:, 0] == y[:, 0], 1.0, 0.0), p)
    return _unrows(p, one)


def welch_from_stats(mean1, std1, n1, mean2, std2, n2) -> float:
    """Two-sided Welch p-value from summary statistics (``scipy.stats.ttest_ind_from_stats``).

    NaN when either n is below 2; for two zero standard deviations, 1 for equal means and 0
    otherwise (as ``welch_p``).
    """
    if n1 < 2 or n2 < 2:
        return math.nan
    if std1 == 0 and std2 == 0:
        return 1.0 if mean1 == mean2 else 0.0
    return float(stats.ttest_ind_from_stats(mean1, std1, n1, mean2, std2, n2, equal_var=False).pvalue)


def smallest_reachable_p(x, y) -> np.ndarray:
    """Smallest two-sided Mann-Whitney p any assignment of the pooled values could give.

    ``x`` (m, n1), ``y`` (m, n2). The same test as ``mann_whitney``, evaluated on the most
    extreme splits of each row's pooled values (the n1 smallest against the rest, and the
    n1 largest against the rest), so ties and the normal approximation are accounted for:
    without ties and with the exact test this is ``2 / C(n1 + n2, n1)``, with ties it is
    larger. A test whose smallest reachable p exceeds its threshold cannot reject whatever
    the difference between the settings.
    """
    x, y, one = _rows(x, y)
    n1 = x.shape[-1]
    pooled = np.sort(np.concatenate([x, y], axis=-1), axis=-1)
    # One call for both extremes: the first rows take the n1 smallest values, the last the n1 largest.
    firsts = np.concatenate([pooled[:, :n1], pooled[:, -n1:]])
    rests = np.concatenate([pooled[:, n1:], pooled[:, :-n1]])
    low, high = np.split(mann_whitney(firsts, rests).pvalue, 2)
    return _unrows(np.minimum(low, high), one)


def batched(fn: Callable[..., object], *samples: Sequence[np.ndarray]) -> list:
    """``fn`` applied to 1-D samples of any sizes: ``fn(a[i], b[i], ...)`` for each i.

    ``samples`` are parallel lists (one list per argument of ``fn``). Items whose samples
    have equal sizes are stacked into one ``(m, n)`` call per argument, so scipy runs
    vectorized. ``fn`` returns an array of shape (m,) or a tuple of them; the result is
    the list of per-item results (floats, or tuples of floats), in input order.
    """
    out: list = [None] * len(samples[0])
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, item in enumerate(zip(*samples)):
        groups.setdefault(tuple(len(a) for a in item), []).append(i)
    for idx in groups.values():
        res = fn(*(np.stack([arg[i] for i in idx]) for arg in samples))
        cols = [np.atleast_1d(r) for r in res] if isinstance(res, tuple) else None
        for row, i in enumerate(idx):
            out[i] = tuple(float(c[row]) for c in cols) if cols else float(np.atleast_1d(res)[row])
    return out


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values of a 1-D array of p-values (NaN entries ignored).

    With the m non-NaN p-values sorted ascending, ``adj_(i) = max_{j<=i} min(1, (m-j+1) p_(j))``;
    rejecting where ``adj <= alpha`` keeps the family-wise error rate at alpha under any
    dependence between the tests. Same shape as the input; NaN stays NaN. (scipy has only
    false-discovery-rate control, ``scipy.stats.false_discovery_control``.)
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    factors = idx.size - np.arange(idx.size)
    out[order] = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    return out


def holm_if(pvalues, i: int, p_i: float) -> float:
    """The Holm-adjusted p of entry ``i`` had its raw p-value been ``p_i``, the others as given."""
    p = np.array(pvalues, dtype=float)
    p[i] = p_i
    return float(holm(p)[i])


def seeds_for_possible_rejection(tests: int, alpha: float) -> int:
    """Smallest equal seed count n per setting whose exact Mann-Whitney test can pass Holm's
    strictest step over ``tests`` tests: ``2 / C(2n, n) <= alpha / tests`` (untied values)."""
    n = 1
    while 2 / math.comb(2 * n, n) > alpha / max(tests, 1):
        n += 1
    return n


@functools.lru_cache(maxsize=256)
def detectable_shift(n1: int, n2: int, level: float, power: float = 0.8) -> float:
    """Shift, in standard deviations, that the two-sided Mann-Whitney test at ``level``
    finds with probability ``power`` for n1 vs n2 seeds of normal noise.

    ``scipy.stats.power`` simulates ``POWER_DRAWS`` sweeps of N(0, 1) against N(d, 1)
    with a fixed seed (so the answer is deterministic and monotone in d) and the shift is
    found by bisection to 0.01. ``inf`` when the test cannot reach ``level`` at all.
    """
    if 2 / math.comb(n1 + n2, n1) > level:
        return math.inf
    significance = np.nextafter(level, 1.0)  # scipy counts p < significance; the verdict is p <= level

    def found(d: float) -> float:
        rng = np.random.default_rng(0)
        res = stats.power(
            lambda x, y, axis: mann_whitney(np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)).pvalue,
            (lambda size: rng.standard_normal(size), lambda size: rng.standard_normal(size) + d),
            (n1, n2),
            significance=significance,
            n_resamples=POWER_DRAWS,
        )
        return float(res.power) - power

    high = 1.0
    while found(high) < 0:
        high *= 2
    return float(optimize.brentq(found, 0.0, high, xtol=0.01))


def welch_detectable_difference(std1: float, n1: int, std2: float, n2: int, level: float,
                                power: float = 0.8) -> float:
    """Difference of means that Welch's two-sided t-test at ``level`` finds with probability
    ``power``, given the two standard deviations and seed counts.

    Under a true difference delta the Welch statistic follows (approximately) a noncentral
    t with Welch-Satterthwaite degrees of freedom and noncentrality ``delta / se``,
    ``se = sqrt(std1^2 / n1 + std2^2 / n2)`` (``scipy.stats.nct``). Both tails come from
    ``nct.sf``, the lower one by symmetry (``P(T(nc) < -c) = P(T(-nc) > c)``): scipy's
    ``nct.cdf`` far in the lower tail returns NaN at the 1-2 degrees of freedom of a
    2-seed side. Since the degrees of freedom are at least ``min(n1, n2) - 1 >= 1``, the
    power reaches 1 as the difference grows, so there is always an answer. NaN when a count
    is below 2 or both deviations are 0 (``evidence.detectable_note`` says why).
    """
    if n1 < 2 or n2 < 2:
        return math.nan
    v1, v2 = std1**2 / n1, std2**2 / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        return math.nan
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    crit = stats.t.ppf(1 - level / 2, df)

    def found(delta: float) -> float:
        nc = delta / se
        return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc)) - power

    high = se
    while found(high) < 0:
        high *= 2
    return float(optimize.brentq(found, 0.0, high, xtol=se * 1e-6))
