"""Tests of tune_selcopy.analyze end to end, from Parquet logs: tables, evidence, sentences,
output formats, reproduction checks, plot, errors."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from synthetic_logs import (
    FIXTURES,
    PUBLISHED_HEADER,
    PUBLISHED_INDIVIDUAL,
    PUBLISHED_ROWS,
    parse_pipe_tables,
    published_fixture,
    separated_fixture,
    write_trial,
)
from tune_selcopy import analyze as an
from tune_selcopy.analysis import stats as st
from tune_selcopy.analysis.formats import fmt_sig
from tune_selcopy.analysis.render import records, unfinished_line
from tune_selcopy.analysis.report import read_results, report
from tune_selcopy.analysis.results import TABLE_COLUMNS
from tune_selcopy.errors import UserError

# ---------------------------------------------------------------------------
# The published attn_act runs
# ---------------------------------------------------------------------------


def test_fixture_is_the_published_individual_table():
    lines = [ln for ln in (FIXTURES / "attn_act_published.csv").read_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.DictReader(lines))
    assert len(rows) == len(PUBLISHED_INDIVIDUAL)
    for r, (trial, act, loss, mask, sample) in zip(rows, PUBLISHED_INDIVIDUAL):
        assert (int(r["trial"]), r["attnact"]) == (trial, act)
        assert abs(float(r["validation_loss"]) - loss) <= 5.0001e-9  # printed with 8 decimals
        assert float(r["validation_mask_error%"]) == mask
        assert abs(float(r["validation_sample_error%"]) - sample) <= 5.0001e-6  # printed with 5 decimals


def test_published_table_reproduces_the_summary_row(published):
    text = report(str(published), detail=True)
    header, body = parse_pipe_tables(text)[0]
    assert header == [
        "qkv", "attn", "attnact", "validation loss", "validation_mask_error%", "train_sample_error%",
        "(min)", "(max)", "(std)", "validation_sample_error%", "(min)", "(max)", "(std)", "model params",
        "train time (minutes)", "throughput", "trials",
    ]
    published_cols = [0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15]
    assert [header[i] for i in published_cols] == PUBLISHED_HEADER
    # worst first: elu+1 then dpfp, as published
    assert [[row[i] for i in published_cols] for row in body] == PUBLISHED_ROWS
    assert [row[-1] for row in body] == ["5", "5"]
    # train_sample_error% of the fixture: elu+1 (1.5625, 0, 1.5625, 0, 0)
    assert body[0][5:9] == ["0.625", "0", "1.5625", "0.855816"]


def test_published_evidence_and_verdict(published_results):
    (res,) = published_results
    ev = res.evidence
    elu = [1.054942441, 0.885743591, 0.796173687, 0.447853778, 0.199044704]
    dpfp = [1.23407969, 1.154456916, 0.228902821, 0.189091123, 0.179139736]
    assert ev.loc["qkv=QK attn=0,0,T attnact=dpfp", "verdict"] == "best"
    r = ev.loc["qkv=QK attn=0,0,T attnact=elu+1"]
    assert r["verdict"] == "indistinguishable"
    # P(dpfp seed beats elu+1 seed): 0 + 0 + 4 + 5 + 5 of 25 pairs
    assert r["p_best_better"] == pytest.approx(14 / 25)
    # exact Mann-Whitney by enumerating all 252 splits: U(dpfp) = 11
    both = dpfp + elu
    us = []
    for c in itertools.combinations(range(10), 5):
        x = [both[i] for i in c]
        y = [both[i] for i in range(10) if i not in c]
        us.append(sum(a > b for a in x for b in y))
    assert sum(u <= 11 or u >= 25 - 11 for u in us) / 252 == pytest.approx(r["p_mwu"])
    assert r["p_mwu"] == pytest.approx(0.841, abs=1e-3)
    # Welch by hand
    m1, m2, v1, v2 = np.mean(dpfp), np.mean(elu), np.var(dpfp, ddof=1), np.var(elu, ddof=1)
    t = (m1 - m2) / math.sqrt(v1 / 5 + v2 / 5)
    df = (v1 / 5 + v2 / 5) ** 2 / ((v1 / 5) ** 2 / 4 + (v2 / 5) ** 2 / 4)
    assert r["p_welch"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert r["holm_welch"] == r["p_welch"] and r["holm_mwu"] == r["p_mwu"]  # one pair of settings
    assert r["p_min"] == pytest.approx(2 / 252) and r["reachable"] == pytest.approx(2 / 252)
    pooled = math.sqrt((np.var(dpfp, ddof=1) + np.var(elu, ddof=1)) / 2)
    assert r["detectable"] == pytest.approx(st.detectable_shift(5, 5, 0.05) * pooled)
    assert r["ci_low"] == pytest.approx(0.676752 - 2.776445 * 0.346975 / math.sqrt(5), rel=1e-5)
    assert r["iqm"] == pytest.approx(np.mean(sorted(elu)[1:4]))
    text = "\n".join(res.sentences)
    assert "Best setting (lowest mean validation_sample_error%): attnact=dpfp (0.597134 over 5 seeds)." in text
    assert ("Indistinguishable from attnact=dpfp at alpha 0.05 (two-sided Mann-Whitney, Holm over the 1 pair of "
            "settings): attnact=elu+1 (Holm p 0.841; a difference of 1.06 would have been found with 80% power).") in text
    assert "Different from" not in text and "Inconclusive" not in text
    assert "5 vs 5 seeds the smallest two-sided Mann-Whitney p that any split of the pooled values can give is 0.00794" in text
    assert unfinished_line(res) == "All 10 trials finished."


def test_markdown_parses_back_into_the_same_numbers(published, published_results):
    text = report(str(published), detail=True)
    (header, body), (eheader, ebody) = parse_pipe_tables(text)[:2]
    (res,) = published_results
    recs = records(res)
    raw_names = ["qkv", "attn", "attnact"] + [c.name for c in TABLE_COLUMNS]
    for row, rec in zip(body, recs):
        for cell, name in zip(row, raw_names):
            v = rec[name]
            if name == "throughput":
                assert float(cell.removesuffix("/s").replace(",", "")) == pytest.approx(v, abs=0.5)
            elif name == "train time (minutes)":
                assert float(cell) == pytest.approx(v, abs=0.005)
                assert cell == f"{v:.2f}".rstrip("0").rstrip(".")
            elif name in ("model params", "trials"):
                assert int(cell.replace(",", "")) == v
            elif isinstance(v, str):
                assert cell == v
            else:
                assert float(cell) == pytest.approx(v, rel=5e-6)
    assert eheader[:4] == ["qkv", "attn", "attnact", "trials"] and eheader[-1] == "verdict"
    assert [r[-1] for r in ebody] == ["indistinguishable", "best"]
    m = "validation_sample_error%"
    lo, hi = ebody[0][eheader.index("95% CI (t)")].strip("[]").split(", ")
    assert float(lo) == pytest.approx(recs[0][f"{m} 95% CI low (t)"], rel=5e-6)
    assert float(hi) == pytest.approx(recs[0][f"{m} 95% CI high (t)"], rel=5e-6)
    assert float(ebody[0][eheader.index("p Mann-Whitney")]) == pytest.approx(recs[0]["p Mann-Whitney"], rel=5e-3)


def test_csv_and_json_hold_the_same_data(published):
    rows_csv = list(csv.DictReader(io.StringIO(report(str(published), fmt="csv"))))
    doc = json.loads(report(str(published), fmt="json"))
    rows_json = doc["experiments"][0]["rows"]
    assert len(rows_csv) == len(rows_json) == 2
    for c, j in zip(rows_csv, rows_json):
        assert list(c) == list(j)
        for k, v in j.items():
            if v is None:
                assert c[k] == ""
            elif isinstance(v, str):
                assert c[k] == v
            else:
                assert float(c[k]) == v  # raw numbers, exact round trip
    elu = rows_json[0]
    assert elu["attnact"] == "elu+1" and elu["trials"] == 5 and elu["model params"] == 229632
    assert elu["validation_sample_error% (std)"] == pytest.approx(0.346975, rel=1e-6)
    assert elu["throughput"] == pytest.approx(11066)
    assert elu["verdict"] == "indistinguishable" and rows_json[1]["P(best better)"] is None
    assert elu["min p (any split)"] == pytest.approx(2 / 252) and elu["detectable difference (80% power)"] > 0
    assert doc["experiments"][0]["unfinished_trials"] == 0
    assert (doc["experiments"][0]["alpha"], doc["experiments"][0]["pairs"]) == (0.05, 1)
    assert any("Indistinguishable" in s for s in doc["experiments"][0]["sentences"])


# ---------------------------------------------------------------------------
# The finding and the compact table (the default report)
# ---------------------------------------------------------------------------


def _sweep(root: Path, name: str, values: dict, keys: list[str], **final) -> Path:
    """One experiment: setting (a key value, or a tuple of them) -> per-seed metric values."""
    for setting, seeds in values.items():
        config = dict(zip(keys, setting if isinstance(setting, tuple) else (setting,)))
        for seed, v in enumerate(seeds, start=1):
            write_trial(root, name, "s", keys, config, seed, {"validation_sample_error%": v, **final},
                        num_validations=2)
    return root / name


def _finding(path: Path, **kw) -> str:
    """The finding as the report prints it (wrapped at 100 columns), on one line."""
    text = report(str(path), **kw)
    return " ".join(text.split("\n\n")[1].split())


def test_significant_digits():
    assert [fmt_sig(v) for v in (0.768, 1.174, 0.7, 45.21, 100, 0.0384022, 1.4976, 0.9996, 1473.2, 3.2e-5, 0)] == [
        "0.768", "1.17", "0.700", "45.2", "100", "0.0384", "1.50", "1.00", "1,473", "3.20e-05", "0"]
    assert [fmt_sig(v, 2) for v in (0.7346, 0.0079365, 17.7, math.nan)] == ["0.73", "0.0079", "18", ""]


def test_compact_report_of_the_published_runs(published):
    text = report(str(published))
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.startswith("## attn_act (space attn_act)\n\nattnact: no difference supported with 5 seeds each")
    assert _finding(published) == (
        "attnact: no difference supported with 5 seeds each (dpfp 0.597%, elu+1 0.677%; Holm p 0.84; only a "
        "difference of >= 1.1 points would have been found with 80% power).")
    assert parse_pipe_tables(text) == [(
        ["attnact", "n", "mean ± 95% CI", "IQM", "seeds, sorted", "verdict"],
        [["elu+1", "5", "0.677 ± 0.43", "0.710", "0.199 0.448 0.796 0.886 1.05", "indistinguishable"],
         ["dpfp", "5", "0.597 ± 0.68", "0.524", "0.179 0.189 0.229 1.15 1.23", "best"]])]
    assert "every setting has qkv=QK attn=0,0,T" in " ".join(text.split())
    # the full evidence is one option away; none of its p columns is in the default view
    assert "Welch" not in text and "P(best better)" not in text and text.endswith("--detail.\n")
    detail = report(str(published), detail=True)
    assert detail.split("\n\n")[1] == _finding(published) and "Welch's test is shown, not used" in detail


@pytest.mark.parametrize("shape", [
    "different", "too few seeds", "one setting", "one seed each", "NaN seeds", "unfinished", "three settings",
    "two keys", "sixteen settings", "identical", "throughput",
])
def test_the_finding_for_every_verdict_shape(tmp_path, shape):
    kw = {}
    if shape == "different":
        path = _sweep(tmp_path, "e", {"elu+1": [5.1, 5.3, 4.9, 5.6, 5.2], "dpfp": [0.5, 0.7, 0.4, 0.6, 0.55]},
                      ["attnact"])
        expected = ("attnact: dpfp is better, 0.550% against 5.22% for elu+1 with 5 seeds each (Holm p 0.0079; a "
                    "seed of dpfp beats a seed of elu+1 with probability 1.00, 95% CI 0.64-1.00).")
    elif shape == "too few seeds":
        path = _sweep(tmp_path, "e", {"a": [1.0, 1.01, 1.02], "b": [9.0, 9.01, 9.02]}, ["attnact"])
        expected = ("attnact: too few seeds to tell, 3 seeds each (a 1.01%, b 9.01%; even complete separation could "
                    "only reach Holm p 0.10 > 0.05; at least 4 untied seeds per setting are needed).")
    elif shape == "one setting":
        path = _sweep(tmp_path, "e", {"elu+1": [1.0, 1.2, 0.8, 1.1]}, ["attnact"])
        expected = "attnact=elu+1: one setting, 4 seeds, mean 1.02% ± 0.27% (95% CI); nothing to compare it with."
    elif shape == "one seed each":
        path = _sweep(tmp_path, "e", {"elu+1": [1.0], "dpfp": [2.0]}, ["attnact"])
        expected = ("attnact: too few seeds to tell, 1 seed each (elu+1 1.00%, dpfp 2.00%; even complete separation "
                    "could only reach Holm p 1.0 > 0.05; at least 4 untied seeds per setting are needed).")
    elif shape == "NaN seeds":
        path = _sweep(tmp_path, "e", {"a": [1.0, math.nan, 1.2, 1.1, math.nan], "b": [2.0, 2.1, 2.2, 2.3, 2.4]},
                      ["attnact"])
        expected = ("attnact: a is better, 1.10% against 2.20% for b with 3 and 5 seeds, 2 seeds with a NaN "
                    "validation_sample_error% left out (Holm p 0.036; a seed of a beats a seed of b with probability "
                    "1.00, 95% CI 0.57-1.00).")
    elif shape == "unfinished":
        path = _sweep(tmp_path, "e", {"a": [1.0, 1.1, 1.2, 1.3], "b": [1.05, 1.15, 1.25, 1.35]}, ["attnact"])
        write_trial(tmp_path, "e", "s", ["attnact"], {"attnact": "b"}, 9, {}, upto=1, num_validations=2)
        expected = ("attnact: no difference supported with 4 seeds each, 1 unfinished trial not counted (a 1.15%, b "
                    "1.20%; Holm p 0.69; only a difference of >= 0.37 points would have been found with 80% power).")
    elif shape == "three settings":
        path = separated_fixture(tmp_path) / "sep"
        expected = ("attnact: best elu+1 (1.02%, 10 seeds each); softmax worse (Holm p <= 3.2e-05); dpfp "
                    "indistinguishable from it (only differences of >= 0.095 points would have been found with 80% "
                    "power).")
    elif shape == "two keys":
        # 4 vs 4 seeds reach Holm's last step (2/70 <= 0.05) but not alpha / 6 pairs, where the power is computed
        values = {("0,0,T", "QK"): [2.0, 2.1, 2.2, 2.3], ("0,0,T", "QV"): [30.0 + i for i in range(10)],
                  ("0,0,4", "QK"): [2.05, 2.15, 2.25, 2.35], ("0,0,4", "QV"): [40.0 + i for i in range(10)]}
        path = _sweep(tmp_path, "e", values, ["attn", "qkv"])
        expected = ("attn x qkv: best attn=0,0,T qkv=QK (2.15%, 4-10 seeds); attn=0,0,4 qkv=QV and attn=0,0,T "
                    "qkv=QV worse (Holm p <= 0.010); attn=0,0,4 qkv=QK indistinguishable from it (the difference these "
                    "seeds would have found is not computable: no split of these seeds reaches p <= 0.0083, the level "
                    "it is computed at).")
    elif shape == "sixteen settings":
        rng = np.random.default_rng(0)
        values = {(a, q): list(rng.lognormal(0, 1, 5)) for a in ("0,0,T", "0,0,1", "0,0,4", "0,0,8")
                  for q in ("QK", "QV", "KV", "QKV")}
        path = _sweep(tmp_path, "e", values, ["attn", "qkv"])
        expected = ("attn x qkv: too few seeds to tell any of the 16 settings apart with 5 seeds each (lowest mean "
                    "attn=0,0,T qkv=KV, 0.553%; Holm over 120 pairs needs at least 8 untied seeds per setting).")
    elif shape == "identical":
        path = _sweep(tmp_path, "e", {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}, ["attnact"])
        expected = ("attnact: too few seeds to tell, 3 seeds each (a 2.00%, b 2.00%; even complete separation could "
                    "only reach Holm p 0.20 > 0.05; at least 4 untied seeds per setting are needed); warning: "
                    "attnact=a and attnact=b gave identical results seed for seed, so the varied values probably "
                    "never reached the model.")
    else:  # a metric where higher is better, with its unit
        path = tmp_path / "e"
        for act, rates in {"a": [1500.0, 1510, 1490, 1505, 1495], "b": [1200.0, 1210, 1190, 1205, 1195]}.items():
            for seed, r in enumerate(rates, start=1):
                write_trial(tmp_path, "e", "s", ["attnact"], {"attnact": act}, seed,
                            {"throughput": r, "validation_sample_error%": r / 1000}, num_validations=2)
        kw = {"metric": "throughput"}
        expected = ("attnact: a is better, 1,500/s against 1,200/s for b with 5 seeds each (Holm p 0.0079; a seed of "
                    "a beats a seed of b with probability 1.00, 95% CI 0.64-1.00).")
    assert _finding(path, **kw) == expected
    text = report(str(path), **kw)
    assert max(len(line) for line in text.splitlines()) <= 100


def test_a_sweep_of_ten_seeds_fits_100_columns(tmp_path):
    rng = np.random.default_rng(5)
    values = {(a, q): list(np.clip(rng.lognormal(np.log(60 if q in ("QV", "KV") else 1.5), 0.8, 10), 0, 100))
              for a in ("0,0,T", "0,0,1", "0,0,4", "0,0,8") for q in ("QK", "QV", "KV", "QKV")}
    text = report(str(_sweep(tmp_path, "e", values, ["attn", "qkv"])))
    assert max(len(line) for line in text.splitlines()) <= 100
    (header, body), (sheader, sbody) = parse_pipe_tables(text)  # the seeds get a table of their own
    assert header == ["attn", "qkv", "n", "mean ± 95% CI", "IQM", "verdict"] and len(body) == 16
    assert sheader == ["attn", "qkv", "seeds, sorted"] and [r[:2] for r in sbody] == [r[:2] for r in body]
    seeds = dict(((r[0], r[1]), [float(v) for v in r[2].split()]) for r in sbody)
    for key, row in seeds.items():
        assert row == sorted(row) and row == pytest.approx(sorted(values[key]), rel=5e-3)


def test_the_finding_with_a_reproduction_check(tmp_path, published):
    assert _finding(published, reference="attn_act").endswith("; both consistent with the reference.")
    shifted = _finding(_shifted(tmp_path, 2.0), reference="attn_act")
    assert shifted.endswith("; elu+1 (2.68% vs 0.677%) and dpfp (2.60% vs 0.597%) differ from the reference.")
    text = report(str(_shifted(tmp_path, 2.0)), reference="attn_act")
    assert parse_pipe_tables(text)[1] == (
        ["attnact", "ours (n)", "reference (n)", "Holm p", "detectable (80%)", "verdict"],
        [["elu+1", "2.68 (5)", "0.677 (5)", "0.016", "", "differs"],
         ["dpfp", "2.60 (5)", "0.597 (5)", "0.016", "", "differs"]])
    ref = tmp_path / "published.csv"
    ref.write_text(PUBLISHED_SUMMARY)
    for (attn, qkv), values in SWEEP_VALUES.items():
        for seed, v in enumerate(values[:2], start=1):
            write_trial(tmp_path / "fixed", "inv", "s", ["attn", "qkv"], {"attn": attn, "qkv": qkv}, seed,
                        {"validation_sample_error%": v}, num_validations=2)
    finding = _finding(tmp_path / "fixed", reference=str(ref))
    assert finding.endswith("; all 4 consistent with the reference (1 row of it not in this sweep).")


# ---------------------------------------------------------------------------
# Separation, power, sorting, several experiments
# ---------------------------------------------------------------------------


def test_too_few_seeds_for_many_settings_names_the_best_mean_by_the_metrics_direction(tmp_path):
    """With throughput (higher is better) the best of settings that cannot be told apart
    has the highest mean, and the finding says so."""
    for act, rates in {"a": [1500.0, 1510], "b": [1200.0, 1210], "c": [900.0, 910]}.items():
        for seed, r in enumerate(rates, start=1):
            write_trial(tmp_path, "e", "s", ["attnact"], {"attnact": act}, seed, {"throughput": r}, num_validations=2)
    assert _finding(tmp_path / "e", metric="throughput").startswith(
        "attnact: too few seeds to tell any of the 3 settings apart with 2 seeds each (highest mean a, 1,505/s;")


def test_clearly_separated_setting_is_different_after_holm(tmp_path):
    res = read_results(str(separated_fixture(tmp_path)))[0]
    ev = res.evidence
    assert [s.keys["attnact"] for s in res.settings] == ["softmax", "dpfp", "elu+1"]  # worst first
    assert ev.loc["attnact=elu+1", "verdict"] == "best"
    worse = ev.loc["attnact=softmax"]
    assert worse["verdict"] == "different"
    # complete separation of 10 vs 10: exact p = 2 / C(20, 10); Holm over the 3 pairs of settings
    # (softmax against each of the two others is the same smallest p): x3, then x2
    assert worse["p_mwu"] == pytest.approx(2 / math.comb(20, 10), rel=1e-9)
    assert worse["holm_mwu"] == pytest.approx(3 * 2 / math.comb(20, 10), rel=1e-9)
    assert worse["holm_welch"] < 1e-10
    assert worse["p_best_better"] == 1.0
    assert worse["holm_mwu"] >= worse["p_mwu"]
    assert ev.loc["attnact=dpfp", "verdict"] == "indistinguishable"
    text = "\n".join(res.sentences)
    assert ("Different from attnact=elu+1 at alpha 0.05 (two-sided Mann-Whitney, Holm over the 3 pairs of settings): "
            "attnact=softmax (Holm p 3.25e-05).") in text
    assert "Indistinguishable from attnact=elu+1 at alpha 0.05" in text and "attnact=dpfp (Holm p" in text


def test_identical_settings_are_flagged(tmp_path):
    for act in ("elu+1", "dpfp", "softmax"):
        for seed in range(3):
            v = 1.0 + seed + (act == "softmax")
            write_trial(tmp_path, "same", "s", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": v}, num_validations=2)
    text = "\n".join(read_results(str(tmp_path))[0].sentences)
    assert "Warning: attnact=dpfp and attnact=elu+1 gave identical results seed for seed" in text
    assert "softmax gave" not in text


def test_power_note_when_significance_is_impossible(tmp_path):
    for act, c in {"a": 1.0, "b": 9.0}.items():
        for seed in range(3):
            write_trial(tmp_path, "few", "s", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": c + 0.01 * seed}, num_validations=2)
    res = read_results(str(tmp_path))[0]
    # 3 vs 3 seeds, 8 apart: the rank test cannot reach 0.05 (p >= 2/20), Welch alone would
    assert res.evidence.loc["attnact=b", "verdict"] == "inconclusive: too few seeds"
    assert res.evidence.loc["attnact=b", "holm_welch"] < 1e-4
    text = "\n".join(res.sentences)
    assert "Indistinguishable" not in text
    assert ("Inconclusive, too few seeds to show a difference from attnact=a at alpha 0.05, however large: "
            "attnact=b (3 vs 3 seeds: the smallest Holm p any split of their values can reach is 0.1).") in text
    assert "Welch's t-test alone would call attnact=b (Holm p " in text
    assert "3 vs 3 seeds the smallest two-sided Mann-Whitney p that any split of the pooled values can give is 0.1" in text
    assert "no setting can be declared different from the best with these seeds" in text
    assert "At least 4 untied seeds per setting" in text


def test_sort_and_several_experiments(tmp_path):
    published_fixture(tmp_path)
    separated_fixture(tmp_path, n=3, experiment="sep")
    text = report(str(tmp_path), sort="attnact", detail=True)
    assert text.index("## attn_act (space attn_act)") < text.index("## sep (space attn_act)")
    tables = parse_pipe_tables(text)
    assert len(tables) == 4  # table + evidence per experiment
    assert [r[2] for r in tables[0][1]] == ["dpfp", "elu+1"]  # keys sort A-Z by default
    assert [r[0] for r in tables[2][1]] == ["dpfp", "elu+1", "softmax"]
    res = read_results(str(tmp_path), sort="validation loss:asc", space="attn_act")
    assert [s.keys["attnact"] for s in res[0].settings] == ["dpfp", "elu+1"]
    res = read_results(str(tmp_path / "attn_act"), sort="trials")
    assert len(res) == 1 and res[0].experiment == "attn_act"
    with pytest.raises(UserError, match="--sort 'nope': unknown column"):
        read_results(str(tmp_path), sort="nope")
    with pytest.raises(UserError, match="--metric"):
        read_results(str(tmp_path), metric="accuracy")


def test_metric_option_drives_the_evidence(published):
    res = read_results(str(published), metric="validation_loss")[0]
    assert res.evidence.loc["qkv=QK attn=0,0,T attnact=dpfp", "mean"] == pytest.approx(0.000896075, rel=1e-6)
    assert "Evidence on validation_loss" in report(str(published), metric="validation_loss", detail=True)


# ---------------------------------------------------------------------------
# Partial and broken input
# ---------------------------------------------------------------------------


def test_unfinished_trials_and_one_seed_settings(tmp_path):
    published_fixture(tmp_path)
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "dpfp"}, 9,
                {"validation_sample_error%": 50.0}, upto=4)
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "softmax"}, 1,
                {"validation_sample_error%": 0.3})
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "relu"}, 1,
                {"validation_sample_error%": 0.3}, upto=2)
    text = report(str(tmp_path), detail=True)
    header, body = parse_pipe_tables(text)[0]
    rows = {r[2]: r for r in body}
    assert set(rows) == {"elu+1", "dpfp", "softmax"}
    assert rows["dpfp"][9] == "0.597134" and rows["dpfp"][-1] == "5"  # unfinished seed 9 left out
    one = rows["softmax"]
    assert one[9:13] == ["0.3", "0.3", "0.3", ""] and one[-1] == "1"
    assert ("Unfinished (running or errored), left out of the statistics: 2 of 13 trials "
            "(attnact=dpfp: 1, attnact=relu: 1).") in text
    # the one-seed setting is the best: 1 vs 5 seeds cannot reach significance, nothing crashes
    assert ("Inconclusive, too few seeds to show a difference from attnact=softmax at alpha 0.05, however large: "
            "attnact=elu+1 (1 vs 5 seeds: the smallest Holm p any split of their values can reach is 1)") in text
    res = read_results(str(tmp_path))[0]
    assert res.evidence.loc["qkv=QK attn=0,0,T attnact=softmax", "verdict"] == "best"
    assert res.evidence.loc["qkv=QK attn=0,0,T attnact=dpfp", "verdict"] == "inconclusive: too few seeds"
    # a one-seed setting that is not the best
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "softmax"}, 1,
                {"validation_sample_error%": 3.0}, trial_id="attn_act_QK_00T_softmax_s1")
    text = report(str(tmp_path), detail=True)
    assert "however large: attnact=softmax (5 vs 1 seeds" in text
    assert "Indistinguishable from attnact=dpfp at alpha 0.05" in text


def test_no_finished_trials_yet(tmp_path):
    write_trial(tmp_path, "e", "s", ["attnact"], {}, 1, {}, upto=3)
    text = report(str(tmp_path), detail=True)
    assert "No finished trials yet." in text
    assert "left out of the statistics: 1 of 1 trials (attnact=elu+1: 1)." in text
    assert report(str(tmp_path)).startswith("## e (space s)\n\nattnact: no finished trials yet.\n\nUnfinished")
    write_trial(tmp_path, "nan", "s", ["attnact"], {}, 1, {"validation_sample_error%": math.nan}, num_validations=2)
    assert ("attnact: every finished seed's validation_sample_error% is NaN (1 seed)."
            in report(str(tmp_path / "nan")))


def test_diverged_trials_are_named_as_such_not_as_unfinished(tmp_path):
    """A trial whose loss turned NaN ended at that validation (its last row says
    ``diverged``): it is counted apart from running or errored ones, in the finding, the
    line under the table and the JSON, also mixed with logs that have no such column."""
    published_fixture(tmp_path)  # written before the column existed: no diverged column
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "dpfp"}, 9,
                {"validation_sample_error%": 100.0}, upto=3, diverged=True)
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "dpfp"}, 8,
                {"validation_sample_error%": 50.0}, upto=4)
    text = " ".join(report(str(tmp_path)).split())  # the compact text wraps at 100 columns
    assert "5 seeds each, 1 unfinished trial not counted, 1 diverged trial not counted" in text
    assert ("Unfinished (running or errored), left out of the statistics: 1 of 12 trials (attnact=dpfp: 1). "
            "Diverged (the loss turned NaN or infinite), left out of the statistics: 1 of 12 trials "
            "(attnact=dpfp: 1).") in text
    res = read_results(str(tmp_path))[0]
    assert res.finished == 10 and res.diverged_ids == ["attn_act_QK_00T_dpfp_s9"]
    assert [int(res.evidence.loc[s.label, "n"]) for s in res.settings] == [5, 5]
    doc = json.loads(report(str(tmp_path), fmt="json"))["experiments"][0]
    assert (doc["diverged_trials"], doc["diverged_by_setting"], doc["unfinished_trials"]) == (1, {"attnact=dpfp": 1}, 1)
    # every trial diverged: said so, not "yet"
    only = tmp_path / "only"
    write_trial(only, "e", "s", ["attnact"], {}, 1, {}, upto=1, diverged=True)
    assert report(str(only)).startswith(
        "## e (space s)\n\nattnact: every trial diverged (1 trial: the loss turned NaN or infinite).\n\nDiverged")


def test_duplicate_rows_are_kept_once(tmp_path):
    tid = write_trial(tmp_path, "e", "s", ["attnact"], {}, 1, {"validation_sample_error%": 2.0}, num_validations=2)
    folder = tmp_path / "e" / "logs" / tid
    (folder / "validation-002-copy.parquet").write_bytes((folder / "validation-002.parquet").read_bytes())
    res = read_results(str(tmp_path))[0]
    assert len(res.settings[0].final) == 1 and res.settings[0].stats["trials"] == 1


def run_main(capsys, *argv):
    rc = an.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_markdown_and_csv(capsys, published):
    rc, out, err = run_main(capsys, published)
    assert rc == 0 and err == "" and "| elu+1     |   5 |" in out and "(min)" not in out
    rc, out, err = run_main(capsys, published, "--detail")
    assert rc == 0 and err == "" and "| QK    | 0,0,T  | elu+1" in out and "(min)" in out
    rc, out, err = run_main(capsys, published, "--format", "csv")
    assert rc == 0 and out.startswith("experiment,space,setting,qkv,attn,attnact,validation loss")
    assert err.startswith("attn_act: attnact: no difference supported with 5 seeds each")
    assert "Indistinguishable" in err and "All 10 trials finished." in err


def test_space_option_takes_a_space_file(capsys, published, tmp_path):
    """--space also takes a space file: the name it declares (or its file name) is used."""
    reference = Path(__file__).resolve().parents[1] / "search_spaces" / "reference" / "attn_act.yml"
    rc, out, err = run_main(capsys, published, "--space", str(reference))
    assert rc == 0 and "| elu+1     |   5 |" in out
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nseeds: 1\ngrid: {qkv: [QK]}\n")
    rc, out, err = run_main(capsys, published, "--space", str(other))
    assert rc == 2 and err.startswith("error: ") and "no trials of space 'other'" in err


def test_uri_paths_go_through_pyarrow(published):
    (res,) = read_results(published.as_uri())
    assert res.experiment == "attn_act" and res.finished == 10


def test_usage_errors_are_one_line(capsys, published):
    rc, out, err = run_main(capsys, published, "--format", "xml")
    assert rc == 2 and out == "" and err.startswith("error: argument --format: invalid choice")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        an.main(["--help"])
    assert exc.value.code == 0 and "--metric COLUMN" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["empty", "no_parquet", "corrupt", "foreign", "missing", "space"])
def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path, case):
    target, name = tmp_path, None
    if case == "no_parquet":
        (tmp_path / "exp").mkdir()
        (tmp_path / "exp" / "experiment_state.json").write_text("{}")
    elif case in ("corrupt", "foreign", "space"):
        write_trial(tmp_path, "e", "s", ["attnact"], {}, 1, {}, num_validations=2)
        bad = tmp_path / "e" / "logs" / "other" / "validation-001.parquet"
        bad.parent.mkdir(parents=True)
        name = None if case == "space" else str(bad)
        if case == "corrupt":
            bad.write_bytes(b"PAR1 this is not parquet")
        elif case == "foreign":
            pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), bad)
        else:
            bad.parent.rmdir()
    elif case == "missing":
        target = tmp_path / "nope"
    args = [target] + (["--space", "attn_invent"] if case == "space" else [])
    rc, out, err = run_main(capsys, *args)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    if name:
        assert name in err
    expected = {
        "empty": "no Parquet trial logs found",
        "no_parquet": "no Parquet trial logs found",
        "corrupt": "not a readable Parquet file",
        "foreign": "not a tune_selcopy trial log (missing columns: experiment",
        "missing": "no such file or folder",
        "space": "no trials of space 'attn_invent' (found: s)",
    }[case]
    assert expected in err


# ---------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------


def _png_size(file: Path) -> tuple[int, int]:
    data = file.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) < 1_000_000
    import matplotlib.image

    img = matplotlib.image.imread(file)
    assert img[..., :3].std() > 0.05  # not a blank canvas
    return struct.unpack(">II", data[16:24])


def test_plots_are_valid_pngs(published, tmp_path):
    file = tmp_path / "curves.png"
    text = report(str(published), plot=str(file))
    intervals = tmp_path / "intervals.png"
    assert f"Plots written to {file} and {intervals}." in text
    assert _png_size(file) == (900, 480)
    width, height = _png_size(intervals)
    assert width == 1200 and 250 < height < 400  # two settings: one row of three panels
    doc = json.loads(report(str(published), plot=str(tmp_path / "x.png"), fmt="json"))
    assert doc["plot"] == str(tmp_path / "x.png") and doc["plots"] == [doc["plot"], str(tmp_path / "x-intervals.png")]


def test_interval_plot_of_many_settings_and_experiments(tmp_path):
    rng = np.random.default_rng(3)
    for a in ("0,0,T", "0,0,1", "0,0,4", "0,0,8"):
        for q in ("QK", "QV", "KV", "QKV"):
            for seed in range(1, 6):
                write_trial(tmp_path, "inv", "s", ["attn", "qkv"], {"attn": a, "qkv": q}, seed,
                            {"validation_sample_error%": float(rng.lognormal(0, 1))}, num_validations=2)
    published_fixture(tmp_path)
    write_trial(tmp_path, "waiting", "s", ["attnact"], {}, 1, {}, upto=1)  # no finished trials: a note
    report(str(tmp_path), plot=str(tmp_path / "p.png"))
    width, height = _png_size(tmp_path / "p-intervals.png")
    assert width == 1200 and height > 1000  # 16 + 2 settings: one row each (the empty experiment has none)


def test_plot_unwritable_is_a_user_error(capsys, published, tmp_path):
    rc, out, err = run_main(capsys, published, "--plot", tmp_path / "new" / "dir" / "x.png")
    assert rc == 0 and (tmp_path / "new" / "dir" / "x-intervals.png").is_file()  # folders are made
    (tmp_path / "a_file").write_text("")
    rc, out, err = run_main(capsys, published, "--plot", tmp_path / "a_file" / "x.png")
    assert rc == 2 and err.startswith(f"error: cannot write plot {tmp_path / 'a_file' / 'x.png'}: ")
    assert err.count("\n") == 1


# ---------------------------------------------------------------------------
# Defects of an earlier version of the analysis (each of these fails on that code)
# ---------------------------------------------------------------------------


def _two_settings(root: Path, values: dict[str, list[float]], experiment: str = "e", **final) -> Path:
    for act, seeds in values.items():
        for seed, v in enumerate(seeds, start=1):
            write_trial(root, experiment, "attn_act", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": v, **final}, num_validations=2)
    return root


def test_best_does_not_depend_on_the_sort(tmp_path):
    # equal means (X = [0, 2], Y = [1, 1]): the best is the same whatever the display order
    _two_settings(tmp_path, {"x": [0.0, 2.0], "y": [1.0, 1.0]})
    bests = set()
    for sort in (None, "validation loss:asc", "validation loss:desc", "attnact", "attnact:desc",
                 "validation_sample_error% (std)", "validation_sample_error% (std):asc"):
        (res,) = read_results(str(tmp_path), sort=sort)
        bests |= set(res.evidence.index[res.evidence["verdict"] == "best"])
    assert bests == {"attnact=x"}  # the label that sorts first takes the tie
    assert "attnact=y has the same mean; a tie goes to the setting whose label sorts first." in "\n".join(res.sentences)


def test_nan_seeds_are_left_out_counted_and_named(tmp_path):
    _two_settings(tmp_path, {"a": [1.0, math.nan, 1.2, 1.1, math.nan], "b": [2.0, 2.1, 2.2, 2.3, 2.4]})
    write_trial(tmp_path, "e", "attn_act", ["attnact"], {"attnact": "c"}, 1,
                {"validation_sample_error%": math.nan}, num_validations=2)
    text = report(str(tmp_path), detail=True)
    (header, body), (eheader, ebody) = parse_pipe_tables(text)[:2]
    trials = {r[0]: r[-1] for r in body}
    n = {r[0]: r[eheader.index("trials")] for r in ebody}
    assert trials == n == {"b": "5", "a": "3"}  # the table and the evidence count the same seeds
    assert "Best setting (lowest mean validation_sample_error%): attnact=a (1.1 over 3 seeds)." in text
    assert ("Left out of the table and the evidence, validation_sample_error% is NaN (the run diverged or logged "
            "no value): attnact=a seeds 2 and 5 (2 of 5 finished seeds) and attnact=c seed 1 (all its finished "
            "seeds: the setting has no row).") in text
    assert "All 11 trials finished." in text
    doc = json.loads(report(str(tmp_path), fmt="json"))["experiments"][0]
    assert doc["nan_seeds"] == {"attnact=a": [2, 5], "attnact=c": [1]}


def test_ranges_sort_numerically(tmp_path):
    params = {"a": [99_000, 1_100_000], "b": [200_000, 200_000], "c": [1_000_000, 1_000_000]}
    for act, counts in params.items():
        for seed, count in enumerate(counts, start=1):
            write_trial(tmp_path, "e", "attn_act", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": 1.0 + seed, "model_params": count}, num_validations=2)
    for sort, order in (("model params", ["c", "b", "a"]), ("model params:asc", ["a", "b", "c"])):
        header, body = parse_pipe_tables(report(str(tmp_path), sort=sort, detail=True))[0]
        assert [r[0] for r in body] == order
        assert {r[0]: r[header.index("model params")] for r in body}["a"] == "99,000-1,100,000"


def test_minutes_print_as_the_published_tables(tmp_path):
    _two_settings(tmp_path, {"a": [1.0, 1.1], "b": [2.0, 2.1]}, train_time_s=114.0)  # 1.90 minutes
    header, body = parse_pipe_tables(report(str(tmp_path), detail=True))[0]
    assert [r[header.index("train time (minutes)")] for r in body] == ["1.9", "1.9"]


def test_alpha_is_one_setting_shown_wherever_it_is_used(capsys, published):
    rc, out, err = run_main(capsys, published, "--alpha", "0.1", "--detail")
    assert rc == 0, err
    assert "Verdicts at alpha 0.1: 'different' needs Holm p Mann-Whitney <= 0.1" in out  # caption
    assert "Indistinguishable from attnact=dpfp at alpha 0.1" in out
    assert "Holm over 1 pair first needs p <= 0.1/1 = 0.1" in out
    assert "alpha 0.05" not in out and "<= 0.05" not in out
    doc = json.loads(report(str(published), fmt="json", alpha=0.1))
    assert doc["experiments"][0]["alpha"] == 0.1
    (res,) = read_results(str(published), alpha=0.1)
    assert res.alpha == 0.1 and "at alpha 0.1" in " ".join(res.sentences)
    rc, out, err = run_main(capsys, published, "--alpha", "0.1", "--reference", "attn_act")  # the compact view
    assert rc == 0 and "at alpha 0.1" in " ".join(out.split()) and "alpha 0.1:" in out and "0.05" not in out
    rc, out, err = run_main(capsys, published, "--alpha", "1.5")
    assert rc == 2 and out == "" and err.startswith("error: --alpha: alpha must be strictly between 0 and 1")
    assert err.count("\n") == 1


def test_repeated_seeds_are_refused(capsys, tmp_path):
    # two sweeps merged into one folder: seed 1 of a setting twice, under two trial ids
    _two_settings(tmp_path, {"a": [1.0, 1.1], "b": [2.0, 2.1]})
    write_trial(tmp_path, "e", "attn_act", ["attnact"], {"attnact": "a"}, 1, {"validation_sample_error%": 1.0},
                num_validations=2, trial_id="other_sweep_a_s1")
    rc, out, err = run_main(capsys, tmp_path)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: experiment e: 2 trials (e_a_s1, other_sweep_a_s1) ran setting 'attnact=a' with seed 1")
    assert "two sweeps were written into one folder?" in err


# ---------------------------------------------------------------------------
# Reproduction check against a reference table
# ---------------------------------------------------------------------------

SHIPPED = Path(__file__).parents[1] / "search_spaces" / "reference" / "attn_act.csv"


def test_shipped_reference_is_the_published_table():
    rows = list(csv.DictReader(ln for ln in SHIPPED.read_text().splitlines() if not ln.startswith("#")))
    assert [(int(r["trial"]), r["attnact"], float(r["validation_loss"]), float(r["validation_mask_error%"]),
             float(r["validation_sample_error%"])) for r in rows] == PUBLISHED_INDIVIDUAL
    assert {(r["qkv"], r["attn"]) for r in rows} == {("QK", "0,0,T")}


def test_reference_is_packaged_and_not_a_space():
    import tomllib

    from tune_selcopy.sweeps.space_sources import available_spaces

    assert "reference" not in available_spaces() and "attn_act" in available_spaces()
    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["tune_selcopy.search_spaces"]
    assert any(SHIPPED.match(f"search_spaces/{g}") for g in globs)


def _shifted(root: Path, by: float) -> Path:
    """The published fixture with every validation_sample_error% moved by ``by`` points."""
    lines = [ln for ln in (FIXTURES / "attn_act_published.csv").read_text().splitlines() if not ln.startswith("#")]
    for r in csv.DictReader(lines):
        write_trial(root, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": r["attnact"]},
                    int(r["trial"]), {"validation_sample_error%": float(r["validation_sample_error%"]) + by})
    return root


def test_published_runs_are_consistent_with_the_shipped_reference(capsys, published):
    rc, out, err = run_main(capsys, published, "--reference", "attn_act", "--detail")
    assert rc == 0, err
    assert ("### Reproduction check: attn_act against search_spaces/reference/attn_act.csv (shipped), "
            "individual runs") in out
    header, body = parse_pipe_tables(out)[2]
    assert [r[header.index("verdict")] for r in body] == ["consistent with the reference"] * 2
    assert [r[header.index("reference n")] for r in body] == ["5", "5"]
    # the published summary row (ours) was computed before the individual runs were printed to 5 decimals
    assert [r[header.index("ours mean")] for r in body] == ["0.676752", "0.597134"]
    assert [r[header.index("reference mean")] for r in body] == ["0.676748", "0.597134"]
    # 5 vs 5 untied seeds: 2/252 at best, Holm over the 2 settings
    assert [r[header.index("min Holm p")] for r in body] == ["0.0159", "0.0159"]
    assert "Consistent with the reference at alpha 0.05 (two-sided Mann-Whitney, Holm over 2 settings): " \
           "attnact=elu+1 (Holm p 1; a difference of" in out
    rc, out2, err = run_main(capsys, published, "--reference", str(SHIPPED), "--detail")
    assert rc == 0 and out2.replace(str(SHIPPED), "X") == out.replace(
        "search_spaces/reference/attn_act.csv (shipped)", "X")


def test_a_shifted_copy_differs_from_the_reference(tmp_path):
    doc = json.loads(report(str(_shifted(tmp_path, 2.0)), fmt="json", reference=str(SHIPPED)))
    check = doc["experiments"][0]["reference_check"]
    assert check["kind"] == "individual runs" and check["tests"] == 2 and check["keys"] == ["qkv", "attn", "attnact"]
    assert [r["verdict"] for r in check["rows"]] == ["differs from the reference"] * 2
    # complete separation of 5 vs 5 seeds: 2/252 each; Holm over 2 settings: x2
    assert [r["p"] for r in check["rows"]] == pytest.approx([2 / 252] * 2)
    assert [r["holm"] for r in check["rows"]] == pytest.approx([4 / 252] * 2)
    assert check["sentences"][0].startswith("Differs from the reference at alpha 0.05 (two-sided Mann-Whitney, "
                                            "Holm over 2 settings): attnact=elu+1 (ours 2.67675 vs 0.676748, Holm p")


def _summary(path: Path, rows: list[tuple]) -> Path:
    text = "attnact,validation_sample_error%,validation_sample_error% (std),trials,validation_sample_error% (min)\n"
    path.write_text(text + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_summary_rows_are_compared_with_welch(tmp_path, published):
    ref = _summary(tmp_path / "summary.csv", [("elu+1", 0.676752, 0.346975, 5, 0.199045),
                                              ("dpfp", 0.597134, 0.54615, 5, 0.17914), ("softmax", 3.0, 1.0, 5, 2.0)])
    text = report(str(published), reference=str(ref), detail=True)
    header, body = parse_pipe_tables(text)[2]
    verdicts = {r[0]: r[header.index("verdict")] for r in body}
    assert verdicts == {"elu+1": "consistent with the reference", "dpfp": "consistent with the reference",
                        "softmax": "only in the reference"}
    assert {r[0]: r[header.index("test")] for r in body}["elu+1"] == "Welch (summary)"
    assert "Only in the reference, not compared: attnact=softmax." in text
    assert ", summary rows" in text and "Welch's t-test from the summary statistics, Holm over 2 settings" in text
    shifted = report(str(_shifted(tmp_path / "logs", 2.0)), reference=str(ref), fmt="csv")
    rows = {r["attnact"]: r for r in csv.DictReader(io.StringIO(shifted))}
    assert rows["elu+1"]["reference verdict"] == "differs from the reference"
    expected = stats.ttest_ind_from_stats(2.676752, 0.346975, 5, 0.676752, 0.346975, 5, equal_var=False).pvalue
    assert float(rows["elu+1"]["reference p"]) == pytest.approx(expected, rel=1e-4)
    assert rows["softmax"]["reference verdict"] == "only in the reference" and rows["softmax"]["setting"] == ""
    assert float(rows["softmax"]["reference mean"]) == 3.0 and rows["elu+1"]["reference n"] == "5"


# A published table of summary rows (mean, std, n = 10) keyed by attn, qkv and attnact, and a
# sweep of attn x qkv that holds attnact fixed at elu+1 (a space file's ``fixed:``).
PUBLISHED_SUMMARY = (
    "attn,qkv,attnact,validation_sample_error%,validation_sample_error% (std),trials\n"
    '"0,0,T",QK,elu+1,1.85,1.47,10\n"0,0,T",QKV,elu+1,2.0,1.85,10\n"0,0,8",QK,elu+1,6.0,1.85,10\n'
    '"0,0,8",QKV,elu+1,2.0,1.85,10\n"0,0,T",QK,dpfp,1.0,1.0,10\n'
)
SWEEP_VALUES = {("0,0,T", "QK"): [1.0, 3.0, 2.1], ("0,0,T", "QKV"): [1.2, 2.9, 2.2],
                ("0,0,8", "QK"): [5.0, 7.1, 6.0], ("0,0,8", "QKV"): [0.9, 3.0, 1.4]}


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_summary_reference_keyed_by_a_fixed_key_with_few_seeds(tmp_path, seeds):
    """Every seed count gives verdicts, not a traceback (2 seeds against n = 10 is ~1.7
    degrees of freedom, where scipy's noncentral t fails), and the key the sweep held fixed
    selects the reference rows with its logged value."""
    for (attn, qkv), values in SWEEP_VALUES.items():
        for seed, v in enumerate(values[:seeds], start=1):
            write_trial(tmp_path, "inv", "attn_invent_small", ["attn", "qkv"],
                        {"attn": attn, "qkv": qkv, "attnact": "elu+1"}, seed, {"validation_sample_error%": v},
                        num_validations=2)
    ref = tmp_path / "published.csv"
    ref.write_text(PUBLISHED_SUMMARY)
    doc = json.loads(report(str(tmp_path / "inv"), fmt="json", reference=str(ref)))
    check = doc["experiments"][0]["reference_check"]
    rows = {(r["attn"], r["qkv"], r["attnact"]): r for r in check["rows"]}
    assert set(rows) == {("0,0,T", "QK", "elu+1"), ("0,0,T", "QKV", "elu+1"), ("0,0,8", "QK", "elu+1"),
                         ("0,0,8", "QKV", "elu+1"), ("0,0,T", "QK", "dpfp")}
    assert rows[("0,0,T", "QK", "dpfp")]["verdict"] == "only in the reference"
    assert rows[("0,0,T", "QK", "dpfp")]["setting"] == ""
    compared = [r for k, r in rows.items() if k[2] == "elu+1"]
    assert all(r["test"] == "Welch (summary)" and r["reference n"] == 10 and r["ours n"] == seeds for r in compared)
    text = " ".join(check["sentences"])
    if seeds == 1:
        assert {r["verdict"] for r in compared} == {"inconclusive: too few seeds"} and check["tests"] == 0
        assert "(1 vs 10 seeds: Welch's t-test needs 2 seeds on each side)" in text
    else:
        assert check["tests"] == 4
        for r in compared:
            assert r["verdict"] in ("consistent with the reference", "differs from the reference")
            if r["verdict"] == "consistent with the reference":
                a = np.array(SWEEP_VALUES[(r["attn"], r["qkv"])][:seeds])
                ref_std = {("0,0,T", "QK"): 1.47}.get((r["attn"], r["qkv"]), 1.85)
                assert r["detectable"] == pytest.approx(st.welch_detectable_difference(
                    np.std(a, ddof=1), seeds, ref_std, 10, 0.05 / 4))
                assert r["detectable"] > 0 and r["detectable_note"] == ""
        assert "Only in the reference, not compared: attn=0,0,T qkv=QK attnact=dpfp." in text


def test_a_fixed_key_with_another_value_is_only_in_the_reference(tmp_path, published):
    """The published attn_act logs hold qkv=QK and attn=0,0,T; a reference row with qkv=QKV is
    not ours, and a reference keyed by a column the sweep never varied (channels) still works."""
    ref = tmp_path / "ref.csv"
    ref.write_text("channels,attnact,validation_sample_error%\n" + "".join(
        f"{ch},{act},{v}\n" for ch in (64, 32) for act in ("elu+1", "dpfp") for v in (0.3, 0.5, 0.7, 0.9, 1.1)))
    doc = json.loads(report(str(published), fmt="json", reference=str(ref)))
    rows = doc["experiments"][0]["reference_check"]["rows"]
    assert [(r["channels"], r["attnact"], r["verdict"]) for r in rows] == [
        ("64", "elu+1", "consistent with the reference"), ("64", "dpfp", "consistent with the reference"),
        ("32", "elu+1", "only in the reference"), ("32", "dpfp", "only in the reference")]
    assert [r["ours n"] for r in rows[:2]] == [5, 5] and rows[2]["ours n"] is None


def test_a_reference_checks_every_experiment_with_a_setting_of_it(tmp_path):
    """A folder with the attn_act sweep and an attn x qkv sweep (attnact fixed at elu+1): the
    attn_act reference is checked against both, the second on its one setting in common; an
    experiment with none (attnact fixed at softmax) is left out."""
    published_fixture(tmp_path)
    for exp, act in (("inv", "elu+1"), ("other", "softmax")):
        for qkv in ("QK", "QKV"):
            for seed in range(1, 4):
                write_trial(tmp_path, exp, "s", ["qkv"], {"qkv": qkv, "attnact": act}, seed,
                            {"validation_sample_error%": 0.5 + 0.2 * seed}, num_validations=2)
    doc = json.loads(report(str(tmp_path), fmt="json", reference="attn_act"))
    checks = {e["experiment"]: e["reference_check"] for e in doc["experiments"] if "reference_check" in e}
    assert set(checks) == {"attn_act", "inv"}
    inv = {(r["qkv"], r["attnact"]): r["verdict"] for r in checks["inv"]["rows"]}
    assert inv == {("QK", "elu+1"): "consistent with the reference", ("QKV", "elu+1"): "only in ours",
                   ("QK", "dpfp"): "only in the reference"}


@pytest.mark.parametrize("case", [
    "missing", "empty", "header only", "no metric", "not a number", "ragged", "summary without trials",
    "repeated summary", "negative std", "unknown key", "no common setting", "keys too coarse",
])
def test_bad_reference_files_are_one_line_errors(capsys, tmp_path, published, case):
    ref = tmp_path / "ref.csv"
    text = {
        "missing": None,
        "empty": "",
        "header only": "attnact,validation_sample_error%\n",
        "no metric": "attnact,validation_loss\nelu+1,0.1\n",
        "not a number": "# a comment line\nattnact,validation_sample_error%\nelu+1,0.5\n\ndpfp,n/a\n",
        "ragged": "attnact,validation_sample_error%\nelu+1,0.5,7\n",
        "summary without trials": "attnact,validation_sample_error%,validation_sample_error% (std)\nelu+1,0.5,0.1\n",
        "repeated summary": "attnact,validation_sample_error%,validation_sample_error% (std),trials\n"
                            "elu+1,0.5,0.1,5\nelu+1,0.6,0.1,5\n",
        "negative std": "attnact,validation_sample_error%,validation_sample_error% (std),n\nelu+1,0.5,-0.1,5\n",
        "unknown key": "attn_act,validation_sample_error%\nelu+1,0.5\n",
        "no common setting": 'qkv,attn,attnact,validation_sample_error%\nQK,"0,0,T",softmax,0.5\n',
        "keys too coarse": "qkv,validation_sample_error%\nQK,0.5\n",
    }[case]
    if text is not None:
        ref.write_text(text)
    rc, out, err = run_main(capsys, published, "--reference", ref)
    assert rc == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1
    expected = {
        "missing": "no such file, nor a shipped reference (shipped: attn_act)",
        "empty": "no rows",
        "header only": "no rows",
        "no metric": "no column validation_sample_error% for --metric validation_sample_error%",
        "not a number": "line 5: validation_sample_error% is 'n/a', not a finite number",  # the file's line
        "ragged": "line 2: the number of values differs from the header's",
        "summary without trials": "need a trials (or n) column",
        "repeated summary": "line 3: a second summary row for elu+1",
        "negative std": "n must be a whole number >= 1 and validation_sample_error% (std) >= 0",
        "unknown key": "its key columns (attn_act) are neither grid keys nor logged config values of any experiment",
        "no common setting": "none of its rows is a setting of ours (experiment attn_act has qkv=QK attn=0,0,T "
                             "attnact=elu+1 and qkv=QK attn=0,0,T attnact=dpfp)",
        "keys too coarse": "do not tell apart the settings attnact=elu+1 and attnact=dpfp",
    }[case]
    assert expected in err and str(ref) in err


# ---------------------------------------------------------------------------
# The shipped example: a real sweep's logs, analysed by the README's first command
# ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "attn_act-5seeds.parquet"


def test_shipped_example_is_a_whole_real_sweep():
    """The logs of a real attn_act sweep, the whole space: 2 settings x 5 seeds, every trial's 10
    validations of the full reference set over 1,000,000 inputs, the published model."""
    from tune_selcopy.trial_logs import load_logs

    df = load_logs(str(EXAMPLE))
    assert len(df) == 100 and df["experiment"].unique().tolist() == ["attn_act-5seeds"]
    per_trial = df.groupby("trial_id")
    assert per_trial["validation_index"].apply(sorted).map(list).tolist() == [list(range(1, 11))] * 10
    assert sorted(zip(per_trial["attnact"].first(), per_trial["seed"].first())) == [
        (act, seed) for act in ("dpfp", "elu+1") for seed in range(1, 6)]
    assert set(df["val_count"]) == {10_000} and per_trial["num_inputs"].max().tolist() == [1_000_000] * 10
    assert set(df["model_params"]) == {229_632} and set(df["qkv"]) == {"QK"} and set(df["attn"]) == {"0,0,T"}


def shown_analyses(text: str) -> list[tuple[list[str], str]]:
    """Every block of ``text`` (a README or a doc) that shows what analysing the shipped
    example prints, wherever it sits: a fenced block whose first line is ``$ python -m
    tune_selcopy.analyze examples/attn_act-5seeds.parquet ...`` (or ``$ tune-selcopy
    analyze ...``); for each, the command's arguments and the text under it."""
    command = re.compile(r"\$ (?:\.venv/bin/)?(?:python -m tune_selcopy\.analyze|tune-selcopy analyze) "
                         rf"({re.escape(str(EXAMPLE.relative_to(ROOT)))}(?: .*)?)")
    found = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        first, _, printed = block.partition("\n")
        match = command.fullmatch(first)
        if match:
            found.append((shlex.split(match.group(1)), printed))
    return found


def printed_by(capsys, tmp_path: Path, argv: list[str]) -> str:
    """What analyze prints for ``argv``, a --plot file written under tmp_path but shown where
    argv puts it."""
    shown = None
    if "--plot" in argv:
        at = argv.index("--plot") + 1
        shown, argv = Path(argv[at]).parent, [*argv[:at], str(tmp_path / Path(argv[at]).name), *argv[at + 1:]]
    rc, out, err = run_main(capsys, *argv)
    assert rc == 0, err
    return out.replace(str(tmp_path), str(shown)) if shown else out


def test_readme_shows_what_the_quick_start_prints_for_the_example(capsys, tmp_path):
    """The README's quick start ends by analysing the shipped example, and the README shows
    exactly what that command prints, the finding first."""
    readme = (ROOT / "README.md").read_text()
    shown = shown_analyses(readme)
    assert shown, ("README.md shows no analysis of the example (a ``` block starting with "
                   "`$ python -m tune_selcopy.analyze examples/attn_act-5seeds.parquet ...`)")
    argv, printed = shown[0]
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert " ".join(argv) in quick  # the quick start runs the command the README shows
    out = printed_by(capsys, tmp_path, argv)
    assert out == printed
    heading, finding = printed.split("\n\n")[:2]
    assert heading == "## attn_act-5seeds (space attn_act)"
    assert finding.startswith("attnact: no difference supported with 5 seeds each")
    assert finding.endswith("both consistent with the\nreference.")
    # 5 vs 5 seeds can reach alpha (smallest p 2/252, Holm over 2 settings against the
    # reference: 0.0159), so the tool must come to a verdict, not "too few seeds"
    (header, body), (rheader, rbody) = parse_pipe_tables(out)
    verdicts = [row[header.index("verdict")] for row in body] + [row[rheader.index("verdict")] for row in rbody]
    assert verdicts == ["indistinguishable", "best", "consistent", "consistent"]


def test_the_docs_show_what_analyze_prints(capsys, tmp_path):
    """docs/analysis.md's output of the shipped example (26 lines, none over 100 columns)
    and its examples of the published runs are what analyze prints."""
    doc = (ROOT / "docs" / "analysis.md").read_text()
    ((argv, printed),) = shown_analyses(doc)
    assert printed_by(capsys, tmp_path, argv) == printed
    assert len(printed.splitlines()) == 26 and max(len(line) for line in printed.splitlines()) <= 100
    blocks = [b for b in re.findall(r"^```\n(.*?)^```", doc, re.S | re.M)
              if b.startswith(("## attn_act (space attn_act)", "### Reproduction check: attn_act "))]
    published_fixture(tmp_path / "pub")
    shifted = _shifted(tmp_path / "shifted", 2.0)
    with_reference = report(str(tmp_path / "pub"), detail=True, reference="attn_act")
    shifted_detail = report(str(shifted), detail=True, reference="attn_act")
    assert blocks == [
        report(str(tmp_path / "pub")), report(str(tmp_path / "pub"), detail=True),
        with_reference[with_reference.index("### Reproduction check"):],
        report(str(shifted), reference="attn_act"), shifted_detail[shifted_detail.index("### Reproduction check"):],
    ]
