"""Tests of tune_selcopy.analysis.evidence: the verdict procedure on arrays (no logs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from tune_selcopy.analysis import evidence as ev
from tune_selcopy.analysis import stats as st


def test_best_ignores_the_order_of_the_settings():
    # equal means: the tie goes to the label that sorts first, whatever order they come in
    for groups in ({"x": [0.0, 2.0], "y": [1.0, 1.0]}, {"y": [1.0, 1.0], "x": [0.0, 2.0]}):
        assert ev.compare_settings(groups)["verdict"].to_dict() == {"x": "best", "y": ev.INCONCLUSIVE}
        assert ev.compare_settings(groups, lower_is_better=False).loc["x", "verdict"] == "best"
    assert ev.pick_best([2.0, 1.0, 1.0], ["a", "c", "b"]) == 2
    assert ev.pick_best([2.0, 1.0, math.nan], ["a", "c", "b"], lower_is_better=False) == 0
    assert ev.pick_best([math.nan], ["a"]) == -1


def test_holm_runs_over_every_pair_of_settings():
    rng = np.random.default_rng(5)
    groups = {f"s{i}": rng.standard_normal(6) + (3 if i == 2 else 0) for i in range(5)}
    df = ev.compare_settings(groups)
    assert df.attrs["pairs"] == 10
    labels = list(groups)
    pairs = list(itertools.combinations(labels, 2))
    raw = [stats.mannwhitneyu(groups[a], groups[b], method="exact").pvalue for a, b in pairs]
    adjusted = dict(zip(pairs, st.holm(raw)))
    best = df.index[df["verdict"] == "best"][0]
    assert df.loc[best, "mean"] == min(np.mean(v) for v in groups.values())
    for lab in labels:
        if lab == best:
            continue
        key = (best, lab) if (best, lab) in adjusted else (lab, best)
        assert df.loc[lab, "holm_mwu"] == pytest.approx(adjusted[key])
        a, b = groups[best], groups[lab]
        brute = np.mean([(x < y) + 0.5 * (x == y) for x in a for y in b])
        assert df.loc[lab, "p_best_better"] == pytest.approx(brute)
    assert df.loc["s2", "verdict"] == ev.DIFFERENT


def test_three_verdicts():
    rng = np.random.default_rng(1)
    groups = {"a": 1.0 + 0.1 * rng.standard_normal(10), "b": 1.05 + 0.1 * rng.standard_normal(10),
              "c": 5.0 + 0.1 * rng.standard_normal(10), "d": [9.0, 9.01]}
    df = ev.compare_settings(groups)
    assert df["verdict"].to_dict() == {"a": "best", "b": ev.INDISTINGUISHABLE, "c": ev.DIFFERENT,
                                       "d": ev.INCONCLUSIVE}
    # complete separation of 10 vs 10 is the smallest exact p; Holm over 6 pairs
    assert df.loc["c", "p_mwu"] == pytest.approx(2 / math.comb(20, 10))
    assert df.loc["c", "holm_mwu"] <= 6 * 2 / math.comb(20, 10) + 1e-15
    # 10 vs 2: complete separation gives 2/66 = 0.03; Holm's step for it (x4 at best) > 0.05
    assert df.loc["d", "p_min"] == pytest.approx(2 / 66)
    assert df.loc["d", "reachable"] > 0.05 and df.loc["d", "holm_welch"] < 1e-6
    # the stated detectable difference: the 80%-power shift at alpha / pairs in pooled stds
    shift = st.detectable_shift(10, 10, 0.05 / 6)
    assert df.loc["b", "detectable"] == pytest.approx(shift * ev.pooled_std(groups["a"], groups["b"]))
    assert all(math.isnan(df.loc[lab, "detectable"]) for lab in "acd")


def test_one_seed_settings_are_inconclusive():
    df = ev.compare_settings({"a": [1.0], "b": [2.0, 2.1, 2.2, 2.3]})
    assert df["verdict"].tolist() == ["best", ev.INCONCLUSIVE]
    assert df.loc["b", "p_min"] == pytest.approx(2 / 5) and math.isnan(df.loc["b", "p_welch"])
    assert ev.compare_settings({"a": [1.0]})["verdict"].tolist() == ["best"]
    with pytest.raises(ValueError, match="at least one"):
        ev.compare_settings({"a": [math.nan]})


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, math.nan])
def test_alpha_must_be_a_level(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ev.compare_settings({"a": [1.0, 2.0]}, alpha=alpha)


def test_alpha_changes_the_verdict():
    groups = {"a": [1.0, 1.1, 1.2, 1.3, 1.4], "b": [1.35, 1.5, 1.6, 1.7, 1.8]}
    p = ev.compare_settings(groups).loc["b", "holm_mwu"]
    assert 0.01 < p <= 0.05
    assert ev.compare_settings(groups).loc["b", "verdict"] == ev.DIFFERENT
    assert ev.compare_settings(groups, alpha=0.01).loc["b", "verdict"] == ev.INDISTINGUISHABLE  # 2/252 <= 0.01
    assert ev.compare_settings(groups, alpha=0.005).loc["b", "verdict"] == ev.INCONCLUSIVE  # 2/252 > 0.005


def test_compare_to_reference_runs_and_summaries():
    ours = {"a": np.array([1.0, 1.2, 0.9, 1.1, 1.05]), "b": np.array([2.0, 2.2, 1.9, 2.1, 2.05])}
    same = ev.compare_to_reference(ours, {k: v + 1e-3 for k, v in ours.items()})
    assert same["verdict"].tolist() == [ev.CONSISTENT] * 2 and same.attrs["tests"] == 2
    assert same.loc["a", "test"] == "Mann-Whitney"
    assert same.loc["a", "reachable"] == pytest.approx(2 * 2 / 252)
    shifted = ev.compare_to_reference(ours, {"a": ours["a"] + 1, "b": ours["b"]})
    assert shifted["verdict"].tolist() == [ev.DIFFERS, ev.CONSISTENT]
    summary = {"a": ev.Summary(5, 1.05, 0.12, 0.9, 1.2), "b": ev.Summary.of(ours["b"] + 1)}
    df = ev.compare_to_reference(ours, summary)
    expected = stats.ttest_ind_from_stats(np.mean(ours["a"]), np.std(ours["a"], ddof=1), 5, 1.05, 0.12, 5,
                                          equal_var=False).pvalue
    assert df.loc["a", "p"] == pytest.approx(expected) and df.loc["a", "test"] == "Welch (summary)"
    assert df["verdict"].tolist() == [ev.CONSISTENT, ev.DIFFERS]
    assert df.loc["a", "detectable"] == pytest.approx(st.welch_detectable_difference(
        np.std(ours["a"], ddof=1), 5, 0.12, 5, 0.05 / 2))
    one = ev.compare_to_reference(ours, {"a": ev.Summary(1, 1.0, 0.0)})
    assert one["verdict"].tolist() == [ev.INCONCLUSIVE] and one.attrs["tests"] == 0
    assert list(ev.compare_to_reference(ours, {"c": ours["a"]}).index) == []


def test_intervals_of_the_iqm_and_of_the_probability_of_improvement():
    rng = np.random.default_rng(8)
    groups = {"a": rng.standard_normal(5), "b": rng.standard_normal(7) + 1, "c": rng.standard_normal(4) + 0.5}
    df = ev.compare_settings(groups)
    best = df.index[df["verdict"] == "best"][0]
    for lab, x in groups.items():
        assert (df.loc[lab, "iqm_low"], df.loc[lab, "iqm_high"]) == pytest.approx(tuple(map(float, st.iqm_ci(x))))
        if lab == best:
            assert math.isnan(df.loc[lab, "p_better_low"])
            continue
        low, high = st.improvement_ci(df.loc[lab, "p_best_better"], groups[best].size, x.size)
        assert (df.loc[lab, "p_better_low"], df.loc[lab, "p_better_high"]) == pytest.approx((float(low), float(high)))
        assert df.loc[lab, "p_better_low"] <= df.loc[lab, "p_best_better"] <= df.loc[lab, "p_better_high"]


def test_a_detectable_difference_that_cannot_be_computed_says_why():
    # 4 vs 4 seeds can reach Holm's last step (2/70 = 0.029 <= 0.05) once the 10-seed setting's
    # pairs are rejected, but not alpha / 3 = 0.017, the level of the power computation
    groups = {"a": [1.0, 1.2, 1.4, 1.6], "b": [1.1, 1.3, 1.5, 1.7], "c": [9.0 + 0.1 * i for i in range(10)]}
    df = ev.compare_settings(groups)
    assert df.loc["b", "verdict"] == ev.INDISTINGUISHABLE and math.isnan(df.loc["b", "detectable"])
    assert df.loc["b", "detectable_note"] == ("not computable: no split of these seeds reaches p <= 0.017, the level "
                                              "it is computed at")
    assert df.loc["c", "detectable_note"] == "" and df.loc["c", "verdict"] == ev.DIFFERENT
    # Welch from summaries with no spread on either side: consistent, any difference would show
    same = ev.compare_to_reference({"a": np.array([2.0, 2.0])}, {"a": ev.Summary(10, 2.0, 0.0)})
    assert same.loc["a", "verdict"] == ev.CONSISTENT and math.isnan(same.loc["a", "detectable"])
    assert same.loc["a", "detectable_note"] == ("not computable: neither side has any spread, so any difference "
                                                "would show")
