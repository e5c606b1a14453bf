"""Grouped result tables, the statistical evidence behind them, and learning-curve plots.

Reads only the Parquet trial logs (``<storage>/<experiment>/logs/<trial_id>/validation-NNN.parquet``,
one row per validation of one trial), so it runs anywhere the logs can be copied or reached
through pyarrow (local folders, ``s3://``, ``gs://``, ...), and it works on partial results.

For every (experiment, space) found under PATH it prints:

1. the published table (spec section 5): one row per setting, averaged over the seeds of
   each trial's *last* validation, plus ``trials`` (the number of seeds in the row);
2. the evidence on one metric (``--metric``, default ``validation_sample_error%``): per
   setting a 95% Student-t interval of the mean and the interquartile mean; against the
   best setting (lowest mean) Welch's t-test, the Mann-Whitney U test, the probability
   that the best beats the setting, and Holm-adjusted p-values across the comparisons;
3. plain sentences: which settings are indistinguishable from the best at alpha 0.05,
   and a power note on what the seed count can possibly show;
4. a line counting the unfinished (running or errored) trials that were left out.

The statistics are small pure functions over 1-D arrays (one job each), in the style of
rliable; ``compare_to_best`` puts them together.

CLI: ``python -m tune_selcopy.analyze PATH [--space NAME] [--sort COLUMN] [--format
markdown|csv|json] [--plot FILE.png] [--metric COLUMN]``. Bad input gives one
``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tune_selcopy.errors import UserError
from tune_selcopy.logs import ID_COLUMNS, METRIC_COLUMNS, resolve

ALPHA = 0.05
CI_LEVEL = 0.95

# ---------------------------------------------------------------------------
# The log contract (written by tune_selcopy.logs; read here only)
# ---------------------------------------------------------------------------

METRICS = METRIC_COLUMNS
IDENTITY_COLUMNS = ID_COLUMNS
PROGRESS_COLUMNS = ("validation_index", "num_validations", "num_inputs")
RUN_COLUMNS = ("model_params", "train_time_s", "throughput")
REQUIRED_COLUMNS = IDENTITY_COLUMNS + PROGRESS_COLUMNS + METRICS + RUN_COLUMNS
NUMERIC_COLUMNS = ("seed",) + PROGRESS_COLUMNS + METRICS + RUN_COLUMNS

#: Metrics the evidence and the plot can be computed on (``--metric``).
EVIDENCE_METRICS = METRICS + ("throughput", "train_time_s")
#: Metrics where a larger value is better; every other one is an error, loss or time.
HIGHER_IS_BETTER = frozenset({"throughput"})

DEFAULT_METRIC = "validation_sample_error%"
FORMATS = ("markdown", "csv", "json")


# ---------------------------------------------------------------------------
# Statistics: small pure functions over 1-D arrays
# ---------------------------------------------------------------------------


def _as_1d(x) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a[~np.isnan(a)]


def sample_std(x) -> float:
    """Sample standard deviation (ddof 1) of a 1-D array of seeds; NaN for fewer than 2."""
    a = _as_1d(x)
    return float(np.std(a, ddof=1)) if a.size >= 2 else math.nan


def iqm(x) -> float:
    """Interquartile mean of a 1-D array of seeds: the mean of the middle 50%.

    ``scipy.stats.trim_mean(x, 0.25)``, as in rliable: ``int(0.25 * n)`` values are cut
    from each end (none for n < 4, one each for n = 4..7, two for n = 8..11). NaN if empty.
    """
    a = _as_1d(x)
    return float(stats.trim_mean(a, 0.25)) if a.size else math.nan


def mean_ci(x, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student-t confidence interval ``(low, high)`` of the mean of a 1-D array of seeds.

    ``mean +- t_{(1+level)/2, n-1} * std(ddof=1) / sqrt(n)``. A t interval (not a
    bootstrap) because with 5-10 seeds a bootstrap interval is too narrow. ``(nan, nan)``
    for fewer than 2 values.
    """
    a = _as_1d(x)
    if a.size < 2:
        return (math.nan, math.nan)
    m = float(a.mean())
    half = float(stats.t.ppf((1 + level) / 2, a.size - 1)) * float(np.std(a, ddof=1)) / math.sqrt(a.size)
    return (m - half, m + half)


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) of two 1-D samples.

    NaN when either sample has fewer than 2 values. When both samples are constant the
    test is undefined; then p is 1.0 for equal values and 0.0 for different ones.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        # Near-constant samples (e.g. every seed at 100% error) make scipy warn about
        # precision loss on stderr; the p-value is still the right answer to report.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def mann_whitney_p(a, b) -> float:
    """Two-sided p-value of the Mann-Whitney U test of two 1-D samples.

    Exact (``method='exact'``) without ties; with ties an exact permutation test over all
    splits when there are at most 20,000 of them, else the tie-corrected normal
    approximation. NaN when either sample has fewer than 2 values.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    both = np.concatenate([a, b])
    if np.unique(both).size == both.size:
        method = "exact"
    elif math.comb(both.size, a.size) <= 20_000:
        if np.ptp(both) == 0:
            return 1.0
        method = stats.PermutationMethod(n_resamples=20_000)
    else:
        method = "asymptotic"
    return float(min(1.0, stats.mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue))


def probability_of_improvement(a, b, lower_is_better: bool = True) -> float:
    """P(a random value of ``a`` is better than a random value of ``b``), ties counting half.

    Equals the Mann-Whitney ``U / (n1 * n2)`` of ``a`` against ``b`` (rliable's
    probability of improvement). "Better" is lower unless ``lower_is_better`` is False.
    NaN if either sample is empty.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.size == 0 or b.size == 0:
        return math.nan
    diff = a[:, None] - b[None, :]
    if lower_is_better:
        diff = -diff
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values for a 1-D array of p-values (NaN entries ignored).

    With the m non-NaN p-values sorted ascending, ``adj_(i) = max_{j<=i} min(1, (m-j+1) p_(j))``;
    reject the i-th hypothesis at level alpha iff ``adj_i <= alpha``. Controls the
    family-wise error rate. Same shape as the input; NaN stays NaN.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def min_mann_whitney_p(n1: int, n2: int) -> float:
    """Smallest two-sided exact Mann-Whitney p-value reachable with n1 vs n2 untied values.

    Complete separation, one of ``C(n1 + n2, n1)`` equally likely orderings at each tail:
    ``2 / C(n1 + n2, n1)`` (e.g. 2/252 = 0.0079 for 5 vs 5).
    """
    return min(1.0, 2 / math.comb(n1 + n2, n1))


def compare_to_best(
    groups: Mapping[str, Sequence[float]],
    lower_is_better: bool = True,
    alpha: float = ALPHA,
    level: float = CI_LEVEL,
) -> pd.DataFrame:
    """Per-group summary and tests against the best group.

    ``groups`` maps a setting label to its 1-D array of per-seed values (order kept).
    The best group has the lowest mean (highest if ``lower_is_better`` is False; first one
    on ties). Returns a DataFrame indexed by label with columns ``n, mean, ci_low, ci_high,
    iqm`` and, for every other group, ``p_welch, p_mwu`` (two-sided), ``p_best_better``
    (probability that a seed of the best beats a seed of the group), ``holm_welch,
    holm_mwu`` (Holm across the testable comparisons) and ``verdict``: ``best``,
    ``different`` (both Holm-adjusted p-values <= alpha), ``indistinguishable`` or
    ``untestable`` (fewer than 2 seeds on either side).
    """
    labels = list(groups)
    arrays = [_as_1d(groups[k]) for k in labels]
    rows = []
    for label, a in zip(labels, arrays):
        low, high = mean_ci(a, level)
        rows.append(
            {
                "n": int(a.size),
                "mean": float(a.mean()) if a.size else math.nan,
                "ci_low": low,
                "ci_high": high,
                "iqm": iqm(a),
            }
        )
    df = pd.DataFrame(rows, index=pd.Index(labels, name="setting"), columns=["n", "mean", "ci_low", "ci_high", "iqm"])
    for col in ("p_welch", "p_mwu", "p_best_better", "holm_welch", "holm_mwu"):
        df[col] = math.nan
    df["verdict"] = ""
    means = df["mean"].to_numpy()
    if not labels or np.all(np.isnan(means)):
        return df
    best_pos = int(np.nanargmin(means) if lower_is_better else np.nanargmax(means))
    best = arrays[best_pos]
    for pos, a in enumerate(arrays):
        if pos == best_pos:
            continue
        df.iloc[pos, df.columns.get_loc("p_welch")] = welch_p(best, a)
        df.iloc[pos, df.columns.get_loc("p_mwu")] = mann_whitney_p(best, a)
        df.iloc[pos, df.columns.get_loc("p_best_better")] = probability_of_improvement(best, a, lower_is_better)
    df["holm_welch"] = holm(df["p_welch"].to_numpy())
    df["holm_mwu"] = holm(df["p_mwu"].to_numpy())
    verdicts = []
    for pos, (hw, hm) in enumerate(zip(df["holm_welch"], df["holm_mwu"])):
        if pos == best_pos:
            verdicts.append("best")
        elif math.isnan(hw) or math.isnan(hm):
            verdicts.append("untestable")
        elif hw <= alpha and hm <= alpha:
            verdicts.append("different")
        else:
            verdicts.append("indistinguishable")
    df["verdict"] = verdicts
    return df


def seeds_for_possible_rejection(comparisons: int, alpha: float = ALPHA) -> int:
    """Smallest equal seed count n per setting whose best exact Mann-Whitney p passes Holm's
    first step (``2 / C(2n, n) <= alpha / comparisons``)."""
    n = 2
    while min_mann_whitney_p(n, n) > alpha / max(comparisons, 1):
        n += 1
    return n


# ---------------------------------------------------------------------------
# Reading the logs
# ---------------------------------------------------------------------------


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _open(path: str):
    """(filesystem, root path inside it, prefix for display) for a local path or a URI."""
    try:
        fs, root = resolve(path)
    except Exception as e:  # noqa: BLE001 - any failure is the user's URI
        raise UserError(f"cannot open {path}: {_one_line(e)}") from None
    scheme = path.split("://", 1)[0] if "://" in path else "file"
    return fs, root, "" if scheme == "file" else f"{scheme}://"


def find_log_files(path: str):
    """All ``*.parquet`` files under ``path`` (recursively), sorted.

    Returns ``(filesystem, [paths], display_prefix)``. Names starting with ``.`` or ``_``
    (temporary or marker files) are skipped. Raises UserError when the path does not
    exist or holds no Parquet file.
    """
    import pyarrow.fs as pafs

    fs, root, prefix = _open(path)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise UserError(f"{path}: no such file or folder")
        if info.type == pafs.FileType.File:
            infos = [info]
        else:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot list {path}: {_one_line(e)}") from None
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith((".", "_"))
    )
    if not files:
        raise UserError(
            f"{path}: no Parquet trial logs found (expected <experiment>/logs/<trial_id>/validation-NNN.parquet)"
        )
    return fs, files, prefix


def _read_one(fs, file: str, shown: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(file) as f:
            table = pq.ParquetFile(f).read()
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{shown}: not a readable Parquet file ({_one_line(e)})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"{shown}: not a tune_selcopy trial log (missing columns: {', '.join(missing)})")
    bad = [
        c
        for c in NUMERIC_COLUMNS
        if not (pa.types.is_integer(table.schema.field(c).type) or pa.types.is_floating(table.schema.field(c).type)
                or pa.types.is_null(table.schema.field(c).type))
    ]
    if bad:
        raise UserError(f"{shown}: not a tune_selcopy trial log (non-numeric columns: {', '.join(bad)})")
    if table.num_rows == 0:
        raise UserError(f"{shown}: trial log has no rows")
    return table


def load_logs(path: str, space: str | None = None) -> pd.DataFrame:
    """All validation rows under ``path`` as one DataFrame (one row per trial validation).

    Duplicate (experiment, trial_id, validation_index) rows keep the latest ``timestamp``.
    ``space`` keeps only that space. Raises UserError naming the first bad file.
    """
    fs, files, prefix = find_log_files(path)
    import pyarrow as pa

    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(lambda f: _read_one(fs, f, prefix + f), files))
    try:
        df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # column types differ between files
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    if "timestamp" in df.columns:
        df = df.sort_values("timestamp", kind="stable")
    df = df.drop_duplicates(["experiment", "trial_id", "validation_index"], keep="last")
    if space is not None:
        found = sorted(df["space"].astype(str).unique())
        df = df[df["space"] == space]
        if df.empty:
            raise UserError(f"{path}: no trials of space {space!r} (found: {', '.join(found)})")
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------------
# Grouping, the published table
# ---------------------------------------------------------------------------


def display_value(v: object) -> str:
    """A config value as the published tables show it: lists stay comma-joined, True is T."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "T" if v else "F"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        return ",".join(display_value(x) for x in v)
    return str(v)


def fmt_float(v: float) -> str:
    """pandas-like default float repr with 6 significant digits; empty for NaN."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def _fmt_p(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.3g}"


def _fmt_params(v) -> str:
    return f"{v:,}" if isinstance(v, (int, np.integer)) else ("" if v is None else str(v))


def _fmt_minutes(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.2f}"


def _fmt_throughput(v: float) -> str:
    return "" if math.isnan(v) else f"{v:,.0f}/s"


# (markdown header, unambiguous name for CSV/JSON and --sort, log column, statistic, formatter)
_STAT_COLUMNS = [
    ("validation loss", "validation loss", "validation_loss", "mean", fmt_float),
    ("validation_mask_error%", "validation_mask_error%", "validation_mask_error%", "mean", fmt_float),
    ("train_sample_error%", "train_sample_error%", "train_sample_error%", "mean", fmt_float),
    ("(min)", "train_sample_error% (min)", "train_sample_error%", "min", fmt_float),
    ("(max)", "train_sample_error% (max)", "train_sample_error%", "max", fmt_float),
    ("(std)", "train_sample_error% (std)", "train_sample_error%", "std", fmt_float),
    ("validation_sample_error%", "validation_sample_error%", "validation_sample_error%", "mean", fmt_float),
    ("(min)", "validation_sample_error% (min)", "validation_sample_error%", "min", fmt_float),
    ("(max)", "validation_sample_error% (max)", "validation_sample_error%", "max", fmt_float),
    ("(std)", "validation_sample_error% (std)", "validation_sample_error%", "std", fmt_float),
    ("model params", "model params", "model_params", "params", _fmt_params),
    ("train time (minutes)", "train time (minutes)", "train_time_s", "minutes", _fmt_minutes),
    ("throughput", "throughput", "throughput", "mean", _fmt_throughput),
    ("trials", "trials", None, "count", str),
]

# (markdown header, CSV/JSON name suffix or name, compare_to_best column, formatter)
_EVIDENCE_COLUMNS = [
    ("mean", "{m} mean", "mean", fmt_float),
    ("95% CI (t)", None, None, None),  # two raw columns: ci_low / ci_high
    ("IQM", "{m} IQM", "iqm", fmt_float),
    ("p Welch", "p Welch", "p_welch", _fmt_p),
    ("p Mann-Whitney", "p Mann-Whitney", "p_mwu", _fmt_p),
    ("P(best better)", "P(best better)", "p_best_better", _fmt_p),
    ("Holm p Welch", "Holm p Welch", "holm_welch", _fmt_p),
    ("Holm p Mann-Whitney", "Holm p Mann-Whitney", "holm_mwu", _fmt_p),
    ("verdict", "verdict", "verdict", str),
]


def _stat(values: np.ndarray, kind: str):
    a = _as_1d(values)
    if kind == "mean":
        return float(a.mean()) if a.size else math.nan
    if kind == "min":
        return float(a.min()) if a.size else math.nan
    if kind == "max":
        return float(a.max()) if a.size else math.nan
    if kind == "std":
        return sample_std(a)
    if kind == "minutes":
        return float(a.mean()) / 60 if a.size else math.nan
    if kind == "params":
        u = sorted({int(v) for v in a})
        if not u:
            return None
        return u[0] if len(u) == 1 else f"{u[0]:,}-{u[-1]:,}"
    raise ValueError(kind)


@dataclass
class Setting:
    """One row of the table: the finished trials of one setting."""

    label: str  # the logs' stable setting label
    keys: dict[str, str]  # varied key -> displayed value, in display order
    final: pd.DataFrame  # one row per finished trial: its last validation
    curves: pd.DataFrame  # every validation row of the finished trials
    stats: dict[str, object] = field(default_factory=dict)  # raw table values by unambiguous name
    name: str = ""  # short name for sentences and legends: the keys that vary, key=value


@dataclass
class ExperimentResult:
    """Everything reported for one (experiment, space)."""

    experiment: str
    space: str
    varied_keys: list[str]
    metric: str
    settings: list[Setting]  # in table order
    evidence: pd.DataFrame  # compare_to_best output, indexed by setting label
    sentences: list[str]
    finished: int
    unfinished: dict[str, int]  # setting name -> number of unfinished trials
    unfinished_ids: list[str]

    @property
    def unfinished_count(self) -> int:
        return sum(self.unfinished.values())


def _varied_keys(df: pd.DataFrame) -> list[str]:
    keys: list[str] = []
    for s in df["varied_keys"].astype(str).unique():
        for k in s.split(","):
            k = k.strip()
            if k and k not in keys:
                keys.append(k)
    return keys


def _sort_spec(sort: str | None, varied: list[str]) -> tuple[str, bool]:
    """(unambiguous column name, descending) for ``--sort``; default worst first."""
    if sort is None:
        return "validation_sample_error%", True
    name, direction = sort, None
    for suffix in (":asc", ":desc"):
        if sort.endswith(suffix):
            name, direction = sort[: -len(suffix)], suffix == ":desc"
    aliases = {raw: raw for _, raw, _, _, _ in _STAT_COLUMNS}
    aliases.update({col: raw for _, raw, col, kind, _ in _STAT_COLUMNS if col and kind in ("mean", "minutes", "params")})
    aliases.update({k: k for k in varied})
    aliases["setting"] = "setting"
    if name not in aliases:
        raise UserError(f"--sort {sort!r}: unknown column (choose from: {', '.join(aliases)}; append :asc or :desc)")
    raw = aliases[name]
    if direction is None:  # numbers worst (largest) first like the published tables, keys A-Z
        direction = raw not in varied and raw != "setting"
    return raw, direction


def _sort_settings(settings: list[Setting], raw: str, descending: bool) -> list[Setting]:
    def value(s: Setting):
        if raw == "setting":
            return s.label
        if raw in s.keys:
            return s.keys[raw]
        return s.stats.get(raw)

    vals = [value(s) for s in settings]
    numeric = all(isinstance(v, (int, float, np.number)) for v in vals if v is not None)
    if not numeric:
        try:
            vals = [float(v) for v in vals]
            numeric = True
        except (TypeError, ValueError):
            vals = ["" if v is None else str(v) for v in vals]
    if numeric:
        vals = [math.nan if v is None else float(v) for v in vals]
    order = sorted(range(len(settings)), key=lambda i: settings[i].label)  # deterministic ties
    present = [i for i in order if not (numeric and math.isnan(vals[i]))]
    missing = [i for i in order if i not in present]
    present.sort(key=lambda i: vals[i], reverse=descending)
    return [settings[i] for i in present + missing]


def _names(settings: list[Setting], varied: list[str]) -> None:
    vary = [k for k in varied if len({s.keys.get(k) for s in settings}) > 1] or varied
    for s in settings:
        s.name = " ".join(f"{k}={s.keys[k]}" for k in vary if k in s.keys) or s.label


def _analyze_group(df: pd.DataFrame, metric: str, sort: str | None, alpha: float) -> ExperimentResult:
    experiment, space = str(df["experiment"].iloc[0]), str(df["space"].iloc[0])
    varied = _varied_keys(df)
    missing = [k for k in varied if k not in df.columns]
    if missing:
        raise UserError(
            f"experiment {experiment}: varied keys {', '.join(missing)} have no column in the trial logs"
        )
    df = df.sort_values(["trial_id", "validation_index"], kind="stable")
    done = df.groupby("trial_id")["validation_index"].transform("max") >= df.groupby("trial_id")[
        "num_validations"
    ].transform("max")
    finished_rows, unfinished_rows = df[done], df[~done]
    # every setting, finished or not, to name the unfinished ones the same way
    all_settings: dict[str, Setting] = {}
    for label, g in df.groupby("setting", sort=True):
        first = g.iloc[0]
        keys = {k: display_value(first[k]) for k in varied}
        fin = finished_rows[finished_rows["setting"] == label]
        last = fin[fin["validation_index"] == fin.groupby("trial_id")["validation_index"].transform("max")]
        all_settings[label] = Setting(str(label), keys, last.reset_index(drop=True), fin.reset_index(drop=True))
    _names(list(all_settings.values()), varied)
    settings = [s for s in all_settings.values() if len(s.final)]
    for s in settings:
        s.stats = {k: s.keys[k] for k in varied}
        for _, raw, col, kind, _fmt in _STAT_COLUMNS:
            s.stats[raw] = len(s.final) if kind == "count" else _stat(s.final[col].to_numpy(), kind)
    raw, descending = _sort_spec(sort, varied)
    settings = _sort_settings(settings, raw, descending)
    lower = metric not in HIGHER_IS_BETTER
    evidence = compare_to_best({s.label: s.final[metric].to_numpy() for s in settings}, lower, alpha)
    unfinished: dict[str, int] = {}
    for label, g in unfinished_rows.groupby("setting", sort=True):
        unfinished[all_settings[label].name] = int(g["trial_id"].nunique())
    result = ExperimentResult(
        experiment=experiment,
        space=space,
        varied_keys=varied,
        metric=metric,
        settings=settings,
        evidence=evidence,
        sentences=[],
        finished=int(finished_rows["trial_id"].nunique()),
        unfinished=unfinished,
        unfinished_ids=sorted(str(t) for t in unfinished_rows["trial_id"].unique()),
    )
    result.sentences = verdict_sentences(result, alpha)
    return result


def analyze(
    path: str,
    *,
    space: str | None = None,
    sort: str | None = None,
    metric: str = DEFAULT_METRIC,
    alpha: float = ALPHA,
) -> list[ExperimentResult]:
    """Read the logs under ``path`` and compute one ExperimentResult per (experiment, space)."""
    if metric not in EVIDENCE_METRICS:
        raise UserError(f"--metric {metric!r}: unknown metric (choose from: {', '.join(EVIDENCE_METRICS)})")
    df = load_logs(path, space)
    results = []
    for _, g in df.groupby(["experiment", "space"], sort=True):
        results.append(_analyze_group(g, metric, sort, alpha))
    return results


# ---------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------


def _join(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def verdict_sentences(result: ExperimentResult, alpha: float = ALPHA) -> list[str]:
    """Plain sentences under the table: the best, who is (in)distinguishable from it, power."""
    ev, m = result.evidence, result.metric
    by_label = {s.label: s for s in result.settings}
    if not len(ev):
        return []
    best_label = ev.index[ev["verdict"] == "best"]
    if not len(best_label):
        return []
    best = by_label[best_label[0]]
    word = "highest" if m in HIGHER_IS_BETTER else "lowest"
    out = [f"Best setting ({word} mean {m}): {best.name} ({fmt_float(ev.loc[best.label, 'mean'])} over "
           f"{len(best.final)} seed{'s' if len(best.final) != 1 else ''})."]
    if len(ev) == 1:
        out.append("Only one setting has finished trials: there is nothing to compare yet.")
        return out

    def with_p(label: str) -> str:
        r = ev.loc[label]
        return f"{by_label[label].name} (Holm p: Welch {_fmt_p(r['holm_welch'])}, Mann-Whitney {_fmt_p(r['holm_mwu'])})"

    same = [lab for lab in ev.index if ev.loc[lab, "verdict"] == "indistinguishable"]
    diff = [lab for lab in ev.index if ev.loc[lab, "verdict"] == "different"]
    untested = [lab for lab in ev.index if ev.loc[lab, "verdict"] == "untestable"]
    if same:
        out.append(
            f"Indistinguishable from {best.name} at alpha {alpha:g} (the seeds cannot support a difference): "
            f"{_join([with_p(lab) for lab in same])}."
        )
        split = [lab for lab in same if min(ev.loc[lab, "holm_welch"], ev.loc[lab, "holm_mwu"]) <= alpha]
        if split:
            out.append(
                "Only one of the two tests rejects for "
                f"{_join([by_label[lab].name for lab in split])}; a difference needs both, so it is not established."
            )
    if diff:
        out.append(
            f"Different from {best.name} at alpha {alpha:g} (both Holm-adjusted tests reject): "
            f"{_join([with_p(lab) for lab in diff])}."
        )
    if untested and len(best.final) < 2:
        out.append(
            f"The best setting has only {len(best.final)} seed, so no comparison with it can be tested: "
            f"{_join([by_label[lab].name for lab in untested])}."
        )
    elif untested:
        out.append(
            "Cannot be tested (fewer than 2 seeds): "
            f"{_join([by_label[lab].name for lab in untested])}."
        )
    tested = [lab for lab in ev.index if ev.loc[lab, "verdict"] in ("indistinguishable", "different")]
    if tested and same:
        out.append(_power_note(ev, tested, best_label[0], alpha))
    out.extend(identical_settings_warnings(result))
    return out


def identical_settings_warnings(result: ExperimentResult) -> list[str]:
    """Sentences for settings whose seeds gave exactly the same final metrics, seed for seed.

    Different settings trained with the same seeds only agree to the last digit when they
    trained the same model: the varied values never reached it (spec section 6).
    """
    seen: dict[tuple, list[str]] = {}
    for s in result.settings:
        if len(s.final) < 2:
            continue
        cols = ["seed", *METRICS]
        key = tuple(map(tuple, s.final[cols].sort_values("seed").to_numpy(dtype=float).round(12).tolist()))
        seen.setdefault(key, []).append(s.name)
    return [
        f"Warning: {_join(names)} gave identical results seed for seed; settings that differ should not, "
        "so the varied values probably never reached the model (check the model constructor)."
        for names in seen.values()
        if len(names) > 1
    ]


def _power_note(ev: pd.DataFrame, tested: list[str], best: str, alpha: float) -> str:
    k = len(tested)
    nb = int(ev.loc[best, "n"])
    pairs = sorted({(nb, int(ev.loc[lab, "n"])) for lab in tested}, key=lambda p: min_mann_whitney_p(*p))
    n1, n2 = pairs[0]  # the best-powered comparison
    pmin = min_mann_whitney_p(n1, n2)
    threshold = alpha / k
    seeds = f"{n1} vs {n2} seeds" if len(pairs) == 1 else f"{n1} vs {n2} seeds (the most of any comparison)"
    head = (
        f"Power: with {seeds} the smallest exact two-sided Mann-Whitney p is "
        f"2/{math.comb(n1 + n2, n1):,} = {pmin:.2g}, reached only when every seed of one setting beats every seed "
        f"of the other; Holm over {k} comparison{'s' if k != 1 else ''} first needs p <= {alpha:g}/{k} = {threshold:.2g}"
    )
    if pmin > threshold:
        need = seeds_for_possible_rejection(k, alpha)
        return (
            head + ", so no setting can be declared different from the best with these seeds, however large the "
            f"difference. At least {need} seeds per setting are needed before a difference can show at all."
        )
    return (
        head + ", so only a near-complete separation of the seeds can reach significance: "
        "'indistinguishable' means these seeds cannot tell the settings apart, not that they are equal."
    )


def unfinished_line(result: ExperimentResult) -> str:
    """The line under the table counting trials left out of the statistics."""
    n = result.unfinished_count
    total = result.finished + n
    if n == 0:
        return f"All {total} trial{'s' if total != 1 else ''} finished."
    parts = ", ".join(f"{name}: {c}" for name, c in result.unfinished.items())
    return (
        f"Unfinished (running or errored), left out of the statistics: {n} of {total} trials ({parts})."
    )


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def table_rows(result: ExperimentResult) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, formatted rows, column alignments) of the published table."""
    headers = list(result.varied_keys) + [h for h, *_ in _STAT_COLUMNS]
    align = ["left"] * len(result.varied_keys) + ["right"] * len(_STAT_COLUMNS)
    rows = []
    for s in result.settings:
        row = [s.keys[k] for k in result.varied_keys]
        for _, raw, _, _, fmt in _STAT_COLUMNS:
            v = s.stats[raw]
            row.append(fmt(v))
        rows.append(row)
    return headers, rows, align


def evidence_rows(result: ExperimentResult) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, formatted rows, alignments) of the evidence table, in table order."""
    headers = list(result.varied_keys) + ["trials"] + [h for h, *_ in _EVIDENCE_COLUMNS]
    align = ["left"] * len(result.varied_keys) + ["right"] * (len(_EVIDENCE_COLUMNS)) + ["left"]
    rows = []
    for s in result.settings:
        r = result.evidence.loc[s.label]
        row = [s.keys[k] for k in result.varied_keys] + [str(int(r["n"]))]
        for header, _, col, fmt in _EVIDENCE_COLUMNS:
            if col is None:
                row.append("" if math.isnan(r["ci_low"]) else f"[{fmt_float(r['ci_low'])}, {fmt_float(r['ci_high'])}]")
            else:
                row.append(fmt(r[col]))
        rows.append(row)
    return headers, rows, align


def records(result: ExperimentResult) -> list[dict]:
    """One dict per setting with raw numbers under unambiguous names (CSV and JSON rows)."""
    m = result.metric
    out = []
    for s in result.settings:
        r = result.evidence.loc[s.label]
        d: dict[str, object] = {"experiment": result.experiment, "space": result.space, "setting": s.label}
        d.update(s.stats)
        d[f"{m} mean"] = r["mean"]
        d[f"{m} 95% CI low (t)"] = r["ci_low"]
        d[f"{m} 95% CI high (t)"] = r["ci_high"]
        d[f"{m} IQM"] = r["iqm"]
        for _, name, col, _ in _EVIDENCE_COLUMNS[3:]:
            d[name] = r[col]
        for k, v in d.items():
            if isinstance(v, np.integer):
                d[k] = int(v)
            elif isinstance(v, (float, np.floating)):
                d[k] = None if math.isnan(v) else float(v)
        out.append(d)
    return out


def _evidence_caption(result: ExperimentResult, alpha: float = ALPHA) -> str:
    k = int(result.evidence["verdict"].isin(["indistinguishable", "different"]).sum())
    better = "higher" if result.metric in HIGHER_IS_BETTER else "lower"
    return (
        f"Evidence on {result.metric} (last validation of each finished trial; {better} is better). "
        "95% CI: Student-t interval of the mean; IQM: interquartile mean (25% trimmed mean). "
        "Against the best setting: two-sided Welch's t-test and Mann-Whitney U test (exact when possible); "
        "P(best better) = U / (n1 n2), the probability that a seed of the best beats a seed of the setting; "
        f"Holm-adjusted across the {k} comparison{'s' if k != 1 else ''}; "
        f"'different' needs both adjusted p-values <= {alpha:g}."
    )


def render_markdown(results: list[ExperimentResult], plot: str | None = None) -> str:
    from tabulate import tabulate

    parts = []
    for res in results:
        parts.append(f"## {res.experiment} (space {res.space})")
        if res.settings:
            h, rows, align = table_rows(res)
            parts.append(tabulate(rows, headers=h, tablefmt="pipe", disable_numparse=True, colalign=align))
            parts.append(_evidence_caption(res))
            h, rows, align = evidence_rows(res)
            parts.append(tabulate(rows, headers=h, tablefmt="pipe", disable_numparse=True, colalign=align))
            if res.sentences:
                parts.append("\n".join(res.sentences))
        else:
            parts.append("No finished trials yet.")
        parts.append(unfinished_line(res))
    if plot:
        parts.append(f"Plot written to {plot}.")
    return "\n\n".join(parts) + "\n"


def render_csv(results: list[ExperimentResult]) -> str:
    rows = [r for res in results for r in records(res)]
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def render_json(results: list[ExperimentResult], plot: str | None = None) -> str:
    doc = {
        "experiments": [
            {
                "experiment": res.experiment,
                "space": res.space,
                "varied_keys": res.varied_keys,
                "metric": res.metric,
                "alpha": ALPHA,
                "rows": records(res),
                "sentences": res.sentences,
                "finished_trials": res.finished,
                "unfinished_trials": res.unfinished_count,
                "unfinished_by_setting": res.unfinished,
                "unfinished_trial_ids": res.unfinished_ids,
                "unfinished_line": unfinished_line(res),
            }
            for res in results
        ],
        "plot": plot,
    }
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------


def plot_curves(results: list[ExperimentResult], file: str) -> str:
    """Write a PNG: per setting, the metric (log y) against training inputs, mean line and
    min-max band over the seeds of the finished trials; one panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in results if r.settings] or results
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 4.8 * len(panels)), squeeze=False)
    for ax, res in zip(axes[:, 0], panels):
        m = res.metric
        for s in res.settings:
            g = s.curves.groupby("validation_index")
            x = g["num_inputs"].median().to_numpy(dtype=float)
            y = g[m]
            mean, lo, hi = (y.mean().to_numpy(float), y.min().to_numpy(float), y.max().to_numpy(float))
            label = f"{s.name} ({len(s.final)} seed{'s' if len(s.final) != 1 else ''})"
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("training inputs")
        ax.set_ylabel(f"{m} (log)")
        ax.set_title(f"{res.experiment} (space {res.space}): mean and min-max over seeds")
        ax.grid(True, which="both", alpha=0.3)
        if res.settings:
            fixed = [k for k in res.varied_keys if len({s.keys.get(k) for s in res.settings}) == 1]
            title = " ".join(f"{k}={res.settings[0].keys[k]}" for k in fixed) if len(res.settings) > 1 else None
            ax.legend(fontsize="small", title=title or None, title_fontsize="small")
        else:
            ax.text(0.5, 0.5, "no finished trials yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    try:
        fig.savefig(file, format="png", dpi=100)
    except OSError as e:
        raise UserError(f"cannot write plot {file}: {_one_line(e)}") from None
    finally:
        plt.close(fig)
    return file


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------


def report(
    path: str,
    *,
    space: str | None = None,
    sort: str | None = None,
    fmt: str = "markdown",
    metric: str = DEFAULT_METRIC,
    plot: str | None = None,
) -> str:
    """The full report for the logs under ``path`` as text in ``fmt`` (markdown, csv, json).

    Markdown: per (experiment, space) a heading, the published table, the evidence table,
    the sentences and the unfinished line (and the plot path). JSON: the same data as a
    document. CSV: the table and evidence rows only (see ``notes`` for the rest). If
    ``plot`` is given, also writes the PNG there. Raises UserError on bad input.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    results = analyze(path, space=space, sort=sort, metric=metric)
    if plot:
        plot_curves(results, plot)
    if fmt == "csv":
        return render_csv(results)
    if fmt == "json":
        return render_json(results, plot)
    return render_markdown(results, plot)


def notes(results: list[ExperimentResult]) -> list[str]:
    """The sentences and unfinished lines of every experiment (what CSV output leaves out)."""
    out = []
    for res in results:
        out.extend(f"{res.experiment}: {s}" for s in res.sentences)
        out.append(f"{res.experiment}: {unfinished_line(res)}")
    return out


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become a UserError (one line, exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m tune_selcopy.analyze",
        description="Grouped result tables, statistical evidence and plots from tune_selcopy Parquet trial logs.",
    )
    p.add_argument("path", metavar="PATH", help="results folder of one sweep, or a parent of several (local or URI)")
    p.add_argument("--space", metavar="SPACE", help="only trials of this search space (a name or its .yaml file)")
    p.add_argument("--sort", metavar="COLUMN", help="sort column (default: validation_sample_error%%, worst first); "
                   "append :asc or :desc")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="markdown", help="output format")
    p.add_argument("--plot", metavar="FILE.png", help="also write learning curves to this PNG")
    p.add_argument("--metric", default=DEFAULT_METRIC, metavar="COLUMN",
                   help=f"metric for the evidence and the plot (default {DEFAULT_METRIC.replace('%', '%%')})")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.fmt not in FORMATS:
            raise UserError(f"--format {args.fmt!r}: choose from {', '.join(FORMATS)}")
        space = args.space
        if space is not None:  # imported here: spaces needs torch, reading logs does not
            from tune_selcopy.spaces import space_name_of

            space = space_name_of(space)
        results = analyze(args.path, space=space, sort=args.sort, metric=args.metric)
        if args.plot:
            plot_curves(results, args.plot)
    except UserError as e:
        print(f"error: {_one_line(e, 1000)}", file=sys.stderr)
        return 2
    if args.fmt == "csv":
        sys.stdout.write(render_csv(results))
        for line in notes(results) + ([f"Plot written to {args.plot}."] if args.plot else []):
            print(line, file=sys.stderr)
    elif args.fmt == "json":
        sys.stdout.write(render_json(results, args.plot))
    else:
        sys.stdout.write(render_markdown(results, args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
