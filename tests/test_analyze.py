"""Tests of tune_selcopy.analyze: tables, evidence, sentences, output formats, plot, errors."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from tune_selcopy import analyze as an

FIXTURES = Path(__file__).parent / "fixtures"

# The published attn_act summary (spec section 4), verbatim strings.
PUBLISHED_HEADER = [
    "qkv", "attn", "attnact", "validation loss", "validation_mask_error%", "validation_sample_error%",
    "(min)", "(max)", "(std)", "model params", "train time (minutes)", "throughput",
]
PUBLISHED_ROWS = [
    ["QK", "0,0,T", "elu+1", "0.00131346", "0.142118", "0.676752", "0.199045", "1.05494", "0.346975",
     "229,632", "1.51", "11,066/s"],
    ["QK", "0,0,T", "dpfp", "0.000896075", "0.119029", "0.597134", "0.17914", "1.23408", "0.54615",
     "229,632", "1.69", "9,871/s"],
]
# The published individual runs (trial, attnact, loss, mask error, sample error), verbatim.
PUBLISHED_INDIVIDUAL = [
    (2, "dpfp", 0.00161164, 0.248806, 1.23408),
    (5, "dpfp", 0.00167819, 0.230892, 1.15446),
    (5, "elu+1", 0.00170212, 0.222930, 1.05494),
    (2, "elu+1", 0.00170096, 0.191083, 0.88574),
    (1, "elu+1", 0.00159251, 0.163217, 0.79617),
    (3, "elu+1", 0.00101384, 0.095541, 0.44785),
    (1, "dpfp", 0.00042169, 0.045780, 0.22890),
    (4, "elu+1", 0.00055788, 0.037818, 0.19904),
    (4, "dpfp", 0.00034492, 0.035828, 0.18909),
    (3, "dpfp", 0.00042392, 0.033837, 0.17914),
]

METRICS = an.METRICS


# ---------------------------------------------------------------------------
# A writer of synthetic logs in the tune_selcopy.logs schema
# ---------------------------------------------------------------------------

BASE_CONFIG = {
    "attn": "0,0,T", "qkv": "QK", "attnact": "elu+1", "num_layers": 3, "channels": 64, "kernel_size": 13,
    "dilation": "3,5,1", "activation": "gelu", "num_items": 26, "input_length": 5, "num_operations": "1,3",
    "val_num_operations": 3, "val_count": 10000, "batch_size": 64, "lr": 5e-4, "weight_decay": 0.01,
    "warmup_steps": 0, "max_inputs": 1_000_000,
}


def write_trial(root: Path, experiment: str, space: str, varied: list[str], config: dict, seed: int,
                final: dict, *, num_validations: int = 10, upto: int | None = None,
                trial_id: str | None = None) -> str:
    """Write validation-001..upto Parquet files of one trial; the last validation has ``final``
    metrics (earlier ones are larger, a decaying curve). Returns the trial id."""
    cfg = {**BASE_CONFIG, **config}
    setting = " ".join(f"{k}={cfg[k]}" for k in varied)
    trial_id = trial_id or f"{experiment}_{'_'.join(str(cfg[k]) for k in varied)}_s{seed}".replace(",", "")
    folder = root / experiment / "logs" / trial_id
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, (upto or num_validations) + 1):
        factor = 1 + 20 * (num_validations - k) / num_validations
        row = {
            "experiment": experiment, "space": space, "trial_id": trial_id, "setting": setting,
            "seed": seed, "varied_keys": ",".join(varied), **cfg, "num_validations": num_validations,
            "validation_index": k, "num_inputs": k * cfg["max_inputs"] // num_validations,
            "step": k * cfg["max_inputs"] // num_validations // 64, "learning_rate": 1e-4,
        }
        for m in METRICS:
            row[m] = float(final.get(m, 1.0)) * factor
        row["model_params"] = int(final.get("model_params", 229_632))
        row["train_time_s"] = float(final.get("train_time_s", 90.0)) * k / num_validations
        row["throughput"] = float(final.get("throughput", 11_000.0))
        row.update(device="cpu", hostname="test", timestamp=1.7e9 + k)
        pq.write_table(pa.Table.from_pylist([row]), folder / f"validation-{k:03d}.parquet")
    return trial_id


def published_fixture(root: Path) -> Path:
    lines = [ln for ln in (FIXTURES / "attn_act_published.csv").read_text().splitlines() if not ln.startswith("#")]
    for r in csv.DictReader(lines):
        final = {m: 1.0 for m in METRICS}
        final.update({k: float(r[k]) for k in ("validation_loss", "validation_mask_error%",
                                                 "validation_sample_error%", "train_sample_error%",
                                                 "train_time_s", "throughput")})
        write_trial(root, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": r["attnact"]},
                    int(r["trial"]), final)
    return root


def separated_fixture(root: Path, n: int = 10, experiment: str = "sep") -> Path:
    """Three settings of n seeds: A (best), B (close to A), C (clearly worse)."""
    rng = np.random.default_rng(1)
    centers = {"elu+1": 1.0, "dpfp": 1.05, "softmax": 5.0}
    for act, c in centers.items():
        for seed in range(n):
            v = c + 0.1 * rng.standard_normal()
            write_trial(root, experiment, "attn_act", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": v}, num_validations=3)
    return root


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    return published_fixture(tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="module")
def published_results(published):
    return an.analyze(str(published))


def parse_pipe_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """All markdown pipe tables in text as (header cells, body rows)."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            tables.append((block[0], block[2:]))
            block = []
    return tables


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def test_holm_known_values_and_nan():
    adj = an.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    np.testing.assert_allclose(adj[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adj[4])
    assert an.holm([0.6, 0.9]).tolist() == [1.0, 1.0]


def test_small_statistics():
    assert an.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # cuts 2 from each end
    assert an.iqm([1, 2, 3, 100]) == 2.5
    low, high = an.mean_ci([1, 2, 3, 4, 5])
    assert low == pytest.approx(3 - 2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert high == pytest.approx(3 + 2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert all(math.isnan(v) for v in an.mean_ci([1.0]))
    assert math.isnan(an.sample_std([1.0]))
    assert an.min_mann_whitney_p(5, 5) == 2 / 252
    assert an.probability_of_improvement([1, 2], [3, 2]) == 0.875  # 3 wins, 1 tie of 4 pairs
    assert an.probability_of_improvement([1, 2], [3, 2], lower_is_better=False) == 0.125
    assert an.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert math.isnan(an.welch_p([1.0], [2.0, 3.0]))
    assert an.seeds_for_possible_rejection(1) == 4  # 2/70 <= 0.05 < 2/20
    assert an.seeds_for_possible_rejection(15) == 6  # 2/924 <= 0.0033 < 2/252


def test_mann_whitney_with_ties_is_exact_permutation():
    a, b = [1, 2, 2, 3, 4], [2, 5, 6, 7, 8]
    both = np.array(a + b, dtype=float)
    ranks = stats.rankdata(both)
    observed = abs(ranks[:5].sum() - 27.5)
    splits = [abs(ranks[list(c)].sum() - 27.5) for c in itertools.combinations(range(10), 5)]
    exact = sum(s >= observed - 1e-12 for s in splits) / len(splits)
    assert an.mann_whitney_p(a, b) == pytest.approx(exact)


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
    text = an.report(str(published))
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
    assert r["holm_welch"] == r["p_welch"] and r["holm_mwu"] == r["p_mwu"]  # one comparison
    assert r["ci_low"] == pytest.approx(0.676752 - 2.776445 * 0.346975 / math.sqrt(5), rel=1e-5)
    assert r["iqm"] == pytest.approx(np.mean(sorted(elu)[1:4]))
    text = "\n".join(res.sentences)
    assert "Best setting (lowest mean validation_sample_error%): attnact=dpfp (0.597134 over 5 seeds)." in text
    assert "Indistinguishable from attnact=dpfp at alpha 0.05" in text
    assert "attnact=elu+1 (Holm p: Welch" in text
    assert "Different from" not in text
    assert "5 vs 5 seeds the smallest exact two-sided Mann-Whitney p is 2/252 = 0.0079" in text
    assert an.unfinished_line(res) == "All 10 trials finished."


def test_markdown_parses_back_into_the_same_numbers(published, published_results):
    text = an.report(str(published))
    (header, body), (eheader, ebody) = parse_pipe_tables(text)[:2]
    (res,) = published_results
    recs = an.records(res)
    raw_names = ["qkv", "attn", "attnact"] + [raw for _, raw, *_ in an._STAT_COLUMNS]
    for row, rec in zip(body, recs):
        for cell, name in zip(row, raw_names):
            v = rec[name]
            if name == "throughput":
                assert float(cell.removesuffix("/s").replace(",", "")) == pytest.approx(v, abs=0.5)
            elif name == "train time (minutes)":
                assert float(cell) == pytest.approx(v, abs=0.005)
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
    rows_csv = list(csv.DictReader(io.StringIO(an.report(str(published), fmt="csv"))))
    doc = json.loads(an.report(str(published), fmt="json"))
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
    assert doc["experiments"][0]["unfinished_trials"] == 0
    assert any("Indistinguishable" in s for s in doc["experiments"][0]["sentences"])


# ---------------------------------------------------------------------------
# Separation, power, sorting, several experiments
# ---------------------------------------------------------------------------


def test_clearly_separated_setting_is_different_after_holm(tmp_path):
    res = an.analyze(str(separated_fixture(tmp_path)))[0]
    ev = res.evidence
    assert [s.keys["attnact"] for s in res.settings] == ["softmax", "dpfp", "elu+1"]  # worst first
    assert ev.loc["attnact=elu+1", "verdict"] == "best"
    worse = ev.loc["attnact=softmax"]
    assert worse["verdict"] == "different"
    # complete separation of 10 vs 10: exact p = 2 / C(20, 10); Holm's first step doubles it
    assert worse["p_mwu"] == pytest.approx(2 / math.comb(20, 10), rel=1e-9)
    assert worse["holm_mwu"] == pytest.approx(2 * 2 / math.comb(20, 10), rel=1e-9)
    assert worse["holm_welch"] < 1e-10
    assert worse["p_best_better"] == 1.0
    assert worse["holm_mwu"] >= worse["p_mwu"]
    assert ev.loc["attnact=dpfp", "verdict"] == "indistinguishable"
    text = "\n".join(res.sentences)
    assert "Different from attnact=elu+1 at alpha 0.05 (both Holm-adjusted tests reject): attnact=softmax" in text
    assert "Indistinguishable from attnact=elu+1 at alpha 0.05" in text and "attnact=dpfp (Holm" in text


def test_identical_settings_are_flagged(tmp_path):
    for act in ("elu+1", "dpfp", "softmax"):
        for seed in range(3):
            v = 1.0 + seed + (act == "softmax")
            write_trial(tmp_path, "same", "s", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": v}, num_validations=2)
    text = "\n".join(an.analyze(str(tmp_path))[0].sentences)
    assert "Warning: attnact=dpfp and attnact=elu+1 gave identical results seed for seed" in text
    assert "softmax gave" not in text


def test_power_note_when_significance_is_impossible(tmp_path):
    for act, c in {"a": 1.0, "b": 9.0}.items():
        for seed in range(3):
            write_trial(tmp_path, "few", "s", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": c + 0.01 * seed}, num_validations=2)
    res = an.analyze(str(tmp_path))[0]
    assert res.evidence.loc["attnact=b", "verdict"] == "indistinguishable"  # 3 vs 3: p >= 0.1
    text = "\n".join(res.sentences)
    assert "3 vs 3 seeds the smallest exact two-sided Mann-Whitney p is 2/20 = 0.1" in text
    assert "no setting can be declared different from the best with these seeds" in text
    assert "At least 4 seeds per setting" in text


def test_sort_and_several_experiments(tmp_path):
    published_fixture(tmp_path)
    separated_fixture(tmp_path, n=3, experiment="sep")
    text = an.report(str(tmp_path), sort="attnact")
    assert text.index("## attn_act (space attn_act)") < text.index("## sep (space attn_act)")
    tables = parse_pipe_tables(text)
    assert len(tables) == 4  # table + evidence per experiment
    assert [r[2] for r in tables[0][1]] == ["dpfp", "elu+1"]  # keys sort A-Z by default
    assert [r[0] for r in tables[2][1]] == ["dpfp", "elu+1", "softmax"]
    res = an.analyze(str(tmp_path), sort="validation loss:asc", space="attn_act")
    assert [s.keys["attnact"] for s in res[0].settings] == ["dpfp", "elu+1"]
    res = an.analyze(str(tmp_path / "attn_act"), sort="trials")
    assert len(res) == 1 and res[0].experiment == "attn_act"
    with pytest.raises(an.UserError, match="--sort 'nope': unknown column"):
        an.analyze(str(tmp_path), sort="nope")
    with pytest.raises(an.UserError, match="--metric"):
        an.analyze(str(tmp_path), metric="accuracy")


def test_metric_option_drives_the_evidence(published):
    res = an.analyze(str(published), metric="validation_loss")[0]
    assert res.evidence.loc["qkv=QK attn=0,0,T attnact=dpfp", "mean"] == pytest.approx(0.000896075, rel=1e-6)
    assert "Evidence on validation_loss" in an.report(str(published), metric="validation_loss")


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
    text = an.report(str(tmp_path))
    header, body = parse_pipe_tables(text)[0]
    rows = {r[2]: r for r in body}
    assert set(rows) == {"elu+1", "dpfp", "softmax"}
    assert rows["dpfp"][9] == "0.597134" and rows["dpfp"][-1] == "5"  # unfinished seed 9 left out
    one = rows["softmax"]
    assert one[9:13] == ["0.3", "0.3", "0.3", ""] and one[-1] == "1"
    assert ("Unfinished (running or errored), left out of the statistics: 2 of 13 trials "
            "(attnact=dpfp: 1, attnact=relu: 1).") in text
    # the one-seed setting is the best: nothing is testable, nothing crashes
    assert ("The best setting has only 1 seed, so no comparison with it can be tested: "
            "attnact=elu+1 and attnact=dpfp.") in text
    res = an.analyze(str(tmp_path))[0]
    assert res.evidence.loc["qkv=QK attn=0,0,T attnact=softmax", "verdict"] == "best"
    assert res.evidence.loc["qkv=QK attn=0,0,T attnact=dpfp", "verdict"] == "untestable"
    # a one-seed setting that is not the best
    write_trial(tmp_path, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": "softmax"}, 1,
                {"validation_sample_error%": 3.0}, trial_id="attn_act_QK_00T_softmax_s1")
    text = an.report(str(tmp_path))
    assert "Cannot be tested (fewer than 2 seeds): attnact=softmax." in text
    assert "Indistinguishable from attnact=dpfp at alpha 0.05" in text


def test_no_finished_trials_yet(tmp_path):
    write_trial(tmp_path, "e", "s", ["attnact"], {}, 1, {}, upto=3)
    text = an.report(str(tmp_path))
    assert "No finished trials yet." in text
    assert "left out of the statistics: 1 of 1 trials (attnact=elu+1: 1)." in text


def test_duplicate_rows_are_kept_once(tmp_path):
    tid = write_trial(tmp_path, "e", "s", ["attnact"], {}, 1, {"validation_sample_error%": 2.0}, num_validations=2)
    folder = tmp_path / "e" / "logs" / tid
    (folder / "validation-002-copy.parquet").write_bytes((folder / "validation-002.parquet").read_bytes())
    res = an.analyze(str(tmp_path))[0]
    assert len(res.settings[0].final) == 1 and res.settings[0].stats["trials"] == 1


def run_main(capsys, *argv):
    rc = an.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_markdown_and_csv(capsys, published):
    rc, out, err = run_main(capsys, published)
    assert rc == 0 and err == "" and "| QK    | 0,0,T  | elu+1" in out
    rc, out, err = run_main(capsys, published, "--format", "csv")
    assert rc == 0 and out.startswith("experiment,space,setting,qkv,attn,attnact,validation loss")
    assert "Indistinguishable" in err and "All 10 trials finished." in err


def test_space_option_takes_a_space_file(capsys, published, tmp_path):
    """--space also takes a space file: the name it declares (or its file name) is used."""
    reference = Path(__file__).resolve().parents[1] / "search_spaces" / "reference" / "attn_act.yml"
    rc, out, err = run_main(capsys, published, "--space", str(reference))
    assert rc == 0 and "| QK    | 0,0,T  | elu+1" in out
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nseeds: 1\ngrid: {qkv: [QK]}\n")
    rc, out, err = run_main(capsys, published, "--space", str(other))
    assert rc == 2 and err.startswith("error: ") and "no trials of space 'other'" in err


def test_uri_paths_go_through_pyarrow(published):
    (res,) = an.analyze(published.as_uri())
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


def test_plot_is_a_valid_png(published, tmp_path):
    file = tmp_path / "curves.png"
    text = an.report(str(published), plot=str(file))
    assert f"Plot written to {file}." in text
    data = file.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 480)
    assert 10_000 < len(data) < 1_000_000
    import matplotlib.image

    img = matplotlib.image.imread(file)
    assert img.shape[:2] == (480, 900)
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_unwritable_is_a_user_error(capsys, published, tmp_path):
    rc, out, err = run_main(capsys, published, "--plot", tmp_path / "missing_dir" / "x.png")
    assert rc == 2 and "cannot write plot" in err and err.count("\n") == 1
