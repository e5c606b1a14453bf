"""Verdicts: which settings the seeds can tell apart, with the family-wise error held at alpha.

The procedure (docs/analysis.md gives the argument and the simulated error rates):

- Every pair of settings is tested with the two-sided Mann-Whitney U test
  (``stats.mann_whitney``: exact, or an exact permutation test over all splits when there
  are ties), and the p-values of **all** k(k-1)/2 pairs are adjusted together with
  Holm's method. Holm controls the chance of any false rejection in the family at alpha
  under any dependence between the tests; since the family holds every pair, the pairs
  with the observed best (which is picked from the same data) are covered whatever the
  data pick.
- The best setting has the lowest mean (highest for a higher-is-better metric); equal
  means go to the setting whose label sorts first, so the best never depends on the
  display order.
- Against the best, a setting is ``different`` when its Holm-adjusted p is at most
  alpha; ``inconclusive: too few seeds`` when not even the most extreme split of the two
  settings' pooled values could have reached alpha after the adjustment; otherwise
  ``indistinguishable``, with the shift that would have been found with 80% power.

Welch's t-test is reported next to it (Holm-adjusted over the same pairs) but decides
nothing: with 5-10 seeds of a skewed or zero-heavy error rate its normal approximation
cannot be trusted, while the rank test is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from tune_selcopy.analysis import stats as st

ALPHA = 0.05
CI_LEVEL = 0.95
POWER = 0.8

BEST = "best"
DIFFERENT = "different"
INDISTINGUISHABLE = "indistinguishable"
INCONCLUSIVE = "inconclusive: too few seeds"
CONSISTENT = "consistent with the reference"
DIFFERS = "differs from the reference"

#: Per setting: its seeds' summary.
SUMMARY_COLUMNS = ("n", "mean", "std", "ci_low", "ci_high", "iqm", "iqm_low", "iqm_high")
#: Per setting but the best: the pair (best, setting).
PAIR_COLUMNS = (
    "p_welch", "p_mwu", "p_best_better", "p_better_low", "p_better_high", "holm_welch", "holm_mwu", "p_min",
    "reachable", "detectable", "detectable_note", "verdict",
)
EVIDENCE_COLUMNS = SUMMARY_COLUMNS + PAIR_COLUMNS


def check_alpha(alpha: float) -> float:
    """``alpha`` if it is a level strictly between 0 and 1; ValueError otherwise."""
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return float(alpha)


def pick_best(means: Sequence[float], labels: Sequence[str], lower_is_better: bool = True) -> int:
    """Position of the best setting: the lowest mean (highest if not ``lower_is_better``);
    among equal means the label that sorts first. NaN means are never best; -1 if all are."""
    candidates = [i for i, m in enumerate(means) if not math.isnan(m)]
    if not candidates:
        return -1
    sign = 1.0 if lower_is_better else -1.0
    return min(candidates, key=lambda i: (sign * means[i], labels[i]))


def detectable(shift: float, spread: float, level: float) -> tuple[float, str]:
    """A detectable difference in the metric's units, ``shift`` (in standard deviations of
    the noise, ``stats.detectable_shift`` at ``level``) times ``spread``, and "" or, when it
    cannot be computed, why not. (A zero spread cannot get here: seeds without spread are
    tied, so inconclusive, or completely separated, so different.)"""
    if math.isinf(shift):
        return math.nan, (f"not computable: no split of these seeds reaches p <= {level:.2g}, "
                          "the level it is computed at")
    return shift * spread, ""


def pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    """Pooled sample standard deviation of two 1-D samples: the spread a shift is measured in."""
    dof = a.size + b.size - 2
    if dof <= 0:
        return math.nan
    ss = ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()
    return math.sqrt(ss / dof)


def compare_settings(
    groups: Mapping[str, Sequence[float]],
    lower_is_better: bool = True,
    alpha: float = ALPHA,
    level: float = CI_LEVEL,
    power: float = POWER,
) -> pd.DataFrame:
    """Per-setting summary and the verdict of each setting against the best.

    ``groups`` maps a setting label to its 1-D array of per-seed values (NaN values are
    dropped; every group needs at least one finite value). Returns a DataFrame indexed by
    label, in the order given, with columns ``n, mean, std``, ``ci_low, ci_high`` (the
    mean's t interval at ``level``), ``iqm, iqm_low, iqm_high`` (``stats.iqm_ci``) and,
    for every setting but the best, the tests of the pair (best, setting): ``p_welch``,
    ``p_mwu`` (two-sided), ``p_best_better`` (the probability that a seed of the best
    beats a seed of the setting, ties counting half: Mann-Whitney U / (n1 n2)),
    ``p_better_low, p_better_high`` (its interval at ``level``, ``stats.improvement_ci``),
    ``holm_welch``, ``holm_mwu`` (Holm over all k(k-1)/2 pairs), ``p_min`` (the smallest
    Mann-Whitney p any split of the pair's pooled values could give), ``reachable`` (that
    p Holm-adjusted, the other pairs as observed), ``detectable`` (for ``indistinguishable`` only:
    the shift, in the metric's units, found with probability ``power`` at alpha / pairs
    under normal noise with the pair's pooled spread; NaN with the reason in
    ``detectable_note`` where it cannot be computed) and ``verdict``. ``attrs["pairs"]``
    is the number of pairs in the Holm family.
    """
    alpha = check_alpha(alpha)
    labels = list(groups)
    arrays = [st.finite(groups[k]) for k in labels]
    if any(a.size == 0 for a in arrays):
        raise ValueError("every setting needs at least one finite value")
    ci = st.batched(lambda x: st.mean_ci(x, level), arrays)
    iqm_ci = st.batched(lambda x: st.iqm_ci(x, level), arrays)
    cols: dict[str, list] = {
        "n": [a.size for a in arrays],
        "mean": [float(a.mean()) for a in arrays],
        "std": st.batched(st.sample_std, arrays),
        "ci_low": [c[0] for c in ci],
        "ci_high": [c[1] for c in ci],
        "iqm": st.batched(st.iqm, arrays),
        "iqm_low": [c[0] for c in iqm_ci],
        "iqm_high": [c[1] for c in iqm_ci],
    }
    for c in PAIR_COLUMNS:
        cols[c] = [math.nan] * len(labels)
    cols["verdict"] = [""] * len(labels)
    cols["detectable_note"] = [""] * len(labels)
    pairs = [(i, j) for i in range(len(arrays)) for j in range(i + 1, len(arrays))]
    best = pick_best(cols["mean"], labels, lower_is_better)
    if best >= 0:
        cols["verdict"][best] = BEST
    if pairs and best >= 0:
        _against_best(cols, arrays, pairs, best, lower_is_better, alpha, power, level)
    df = pd.DataFrame(cols, index=pd.Index(labels, name="setting"), columns=list(EVIDENCE_COLUMNS))
    df.attrs["pairs"] = len(pairs)
    return df


def _against_best(cols: dict[str, list], arrays: list[np.ndarray], pairs: list[tuple[int, int]], best: int,
                  lower_is_better: bool, alpha: float, power: float, level: float) -> None:
    """Fill the test columns of ``compare_settings`` for every setting but the best."""
    xs, ys = [arrays[i] for i, _ in pairs], [arrays[j] for _, j in pairs]
    u, p_mwu = map(np.array, zip(*st.batched(st.mann_whitney, xs, ys)))
    p_welch = np.array(st.batched(st.welch_p, xs, ys))
    holm_mwu, holm_welch = st.holm(p_mwu), st.holm(p_welch)
    others = [i for i in range(len(arrays)) if i != best]
    at = {pair: q for q, pair in enumerate(pairs)}
    reach = st.batched(st.smallest_reachable_p, [arrays[best]] * len(others), [arrays[i] for i in others])
    for i, p_min in zip(others, reach):
        q = at[(min(best, i), max(best, i))]
        nb, ni = arrays[best].size, arrays[i].size
        # u[q] counts the seed pairs where the pair's first setting has the larger value.
        best_larger = u[q] / (nb * ni) if best < i else 1 - u[q] / (nb * ni)
        reachable = st.holm_if(p_mwu, q, p_min)
        size, note = math.nan, ""
        if holm_mwu[q] <= alpha:
            verdict = DIFFERENT
        elif reachable > alpha:
            verdict = INCONCLUSIVE
        else:
            verdict, bonferroni = INDISTINGUISHABLE, alpha / len(pairs)
            shift = st.detectable_shift(nb, ni, bonferroni, power)
            size, note = detectable(shift, pooled_std(arrays[best], arrays[i]), bonferroni)
        better = 1 - best_larger if lower_is_better else best_larger
        low, high = st.improvement_ci(better, nb, ni, level)
        values = (p_welch[q], p_mwu[q], better, float(low), float(high), holm_welch[q], holm_mwu[q], p_min,
                  reachable, size, note, verdict)
        for c, v in zip(PAIR_COLUMNS, values):
            cols[c][i] = v


class Summary(NamedTuple):
    """Summary statistics of one setting's seeds (a reference table's row)."""

    n: int
    mean: float
    std: float
    min: float = math.nan
    max: float = math.nan

    @classmethod
    def of(cls, values) -> Summary:
        a = st.finite(values)
        if not a.size:
            return cls(0, math.nan, math.nan)
        return cls(a.size, float(a.mean()), st.sample_std(a), float(a.min()), float(a.max()))


REFERENCE_COLUMNS = ("test", "p", "holm", "reachable", "detectable", "detectable_note", "verdict")


def compare_to_reference(
    ours: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float] | Summary],
    alpha: float = ALPHA,
    power: float = POWER,
) -> pd.DataFrame:
    """Our seeds against a reference, setting by setting, for the labels in both.

    ``ours`` maps a label to its per-seed values; ``reference`` to per-seed values
    (individual runs: the two-sided Mann-Whitney test, as ``compare_settings``) or to a
    ``Summary`` (only mean, std and n published: Welch's t-test from the summary
    statistics). Holm adjusts across the settings. Returns a DataFrame indexed by label
    with ``test``, ``p``, ``holm``, ``reachable`` (the smallest Holm-adjusted p the test
    could reach on these seeds; for Welch any p is reachable once both sides have 2
    seeds), ``detectable`` (the difference found with probability ``power`` at
    alpha / settings: Mann-Whitney under normal noise with the pooled spread, Welch by
    its noncentral t), ``detectable_note`` (why a consistent setting's ``detectable`` is
    NaN, else "") and ``verdict``: ``differs from the reference``, ``consistent with
    the reference`` or ``inconclusive: too few seeds``. ``attrs["tests"]`` is the Holm family size.
    """
    alpha = check_alpha(alpha)
    labels = [k for k in ours if k in reference]
    df = pd.DataFrame(index=pd.Index(labels, name="setting"), columns=list(REFERENCE_COLUMNS), dtype=object)
    mine = {k: st.finite(ours[k]) for k in labels}
    runs = [k for k in labels if not isinstance(reference[k], Summary)]
    theirs = {k: st.finite(reference[k]) for k in runs}
    tests = st.batched(st.mann_whitney, [mine[k] for k in runs], [theirs[k] for k in runs])
    reach = st.batched(st.smallest_reachable_p, [mine[k] for k in runs], [theirs[k] for k in runs])
    raw = {k: (t[1], r) for k, t, r in zip(runs, tests, reach)}
    for k in labels:
        if k not in raw:
            a, s = Summary.of(mine[k]), reference[k]
            p = st.welch_from_stats(a.mean, a.std, a.n, s.mean, s.std, s.n)
            raw[k] = (p, 0.0 if not math.isnan(p) else math.nan)
    p = np.array([raw[k][0] for k in labels], dtype=float)
    holm = st.holm(p)
    tested = int((~np.isnan(p)).sum())
    df.attrs["tests"] = tested
    for i, k in enumerate(labels):
        reachable = st.holm_if(p, i, raw[k][1]) if not math.isnan(p[i]) else math.nan
        summary = isinstance(reference[k], Summary)
        size, note = math.nan, ""
        if holm[i] <= alpha:
            verdict = DIFFERS
        elif not reachable <= alpha:  # NaN (fewer than 2 seeds for Welch) is inconclusive too
            verdict = INCONCLUSIVE
        elif summary:
            a, s = Summary.of(mine[k]), reference[k]
            verdict = CONSISTENT
            size = st.welch_detectable_difference(a.std, a.n, s.std, s.n, alpha / tested, power)
            if math.isnan(size):  # both n >= 2 here: only two zero deviations leave it undefined
                note = "not computable: neither side has any spread, so any difference would show"
        else:
            verdict = CONSISTENT
            shift = st.detectable_shift(mine[k].size, theirs[k].size, alpha / tested, power)
            size, note = detectable(shift, pooled_std(mine[k], theirs[k]), alpha / tested)
        df.loc[k] = ["Welch (summary)" if summary else "Mann-Whitney", p[i], holm[i], reachable, size, note,
                     verdict]
    return df
