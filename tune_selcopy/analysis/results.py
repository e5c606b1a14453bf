"""The logs grouped into the published table: one row per setting, the seed dimension
averaged away, with the evidence and the sentences of each (experiment, space).

A row's seeds are the finished trials of the setting (those that logged their last
validation) whose evidence metric is a number: the table's ``trials`` and the evidence's
n count the same seeds. Seeds with a NaN metric are left out and named in a sentence;
two trials of one setting with the same seed are refused (fake replicates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from tune_selcopy.analysis import evidence, formats
from tune_selcopy.analysis import stats as st
from tune_selcopy.errors import UserError
from tune_selcopy.trial_logs import METRIC_COLUMNS, load_logs

#: Metrics the evidence and the plot can be computed on (``--metric``).
EVIDENCE_METRICS = METRIC_COLUMNS + ("throughput", "train_time_s")
#: Metrics where a larger value is better; every other one is an error, loss or time.
HIGHER_IS_BETTER = frozenset({"throughput"})
DEFAULT_METRIC = "validation_sample_error%"


class StatColumn(NamedTuple):
    """One column of the published table."""

    header: str  # as the published table heads it (several are "(min)", "(max)", "(std)")
    name: str  # unambiguous: the CSV/JSON key and the --sort name
    log_column: str | None  # the log column summarized over the seeds; None for the count
    statistic: str  # mean, min, max, std, minutes (mean / 60), params (value or range), count
    fmt: Callable[[object], str]


def _spread(metric: str) -> tuple[StatColumn, ...]:
    return (
        StatColumn(metric, metric, metric, "mean", formats.fmt_float),
        StatColumn("(min)", f"{metric} (min)", metric, "min", formats.fmt_float),
        StatColumn("(max)", f"{metric} (max)", metric, "max", formats.fmt_float),
        StatColumn("(std)", f"{metric} (std)", metric, "std", formats.fmt_float),
    )


TABLE_COLUMNS: tuple[StatColumn, ...] = (
    StatColumn("validation loss", "validation loss", "validation_loss", "mean", formats.fmt_float),
    StatColumn("validation_mask_error%", "validation_mask_error%", "validation_mask_error%", "mean",
               formats.fmt_float),
    *_spread("train_sample_error%"),
    *_spread("validation_sample_error%"),
    StatColumn("model params", "model params", "model_params", "params", formats.fmt_params),
    StatColumn("train time (minutes)", "train time (minutes)", "train_time_s", "minutes", formats.fmt_minutes),
    StatColumn("throughput", "throughput", "throughput", "mean", formats.fmt_throughput),
    StatColumn("trials", "trials", None, "count", str),
)


def column_statistic(values: np.ndarray, statistic: str) -> object:
    """One table cell's raw value: ``statistic`` of a 1-D array of per-seed values
    (NaN values ignored; NaN, or None for params, when none is left)."""
    a = st.finite(values)
    if statistic == "count":
        return int(np.asarray(values).size)
    if not a.size:
        return None if statistic == "params" else float("nan")
    if statistic == "params":
        low, high = int(a.min()), int(a.max())
        return low if low == high else formats.IntRange(low, high)
    if statistic == "std":
        return float(st.sample_std(a))
    value = {"mean": a.mean, "min": a.min, "max": a.max, "minutes": lambda: a.mean() / 60}[statistic]()
    return float(value)


@dataclass
class Setting:
    """One row of the table: the seeds of one setting."""

    label: str  # the logs' stable setting label
    keys: dict[str, str]  # varied key -> displayed value, in display order
    final: pd.DataFrame  # one row per seed in the statistics: the trial's last validation
    curves: pd.DataFrame  # every validation row of those trials
    nan_seeds: list[int] = field(default_factory=list)  # finished seeds left out: NaN metric
    nan_cells: dict[str, list[int]] = field(default_factory=dict)  # other table column -> seeds with NaN
    stats: dict[str, object] = field(default_factory=dict)  # raw table values by unambiguous name
    name: str = ""  # short name for sentences and legends: the keys that vary, key=value


@dataclass
class ExperimentResult:
    """Everything reported for one (experiment, space)."""

    experiment: str
    space: str
    varied_keys: list[str]
    metric: str
    alpha: float
    settings: list[Setting]  # the rows, in table order
    evidence: pd.DataFrame  # evidence.compare_settings output, indexed by setting label
    finished: int
    unfinished: dict[str, int]  # setting name -> number of unfinished trials
    unfinished_ids: list[str]
    nan_only: dict[str, list[int]] = field(default_factory=dict)  # settings without a row: name -> NaN seeds
    sentences: list[str] = field(default_factory=list)
    diverged: dict[str, int] = field(default_factory=dict)  # setting name -> trials whose loss turned NaN
    diverged_ids: list[str] = field(default_factory=list)

    @property
    def unfinished_count(self) -> int:
        return sum(self.unfinished.values())

    @property
    def diverged_count(self) -> int:
        return sum(self.diverged.values())

    @property
    def lower_is_better(self) -> bool:
        return self.metric not in HIGHER_IS_BETTER

    @property
    def best(self) -> Setting:
        """The setting the verdicts compare the others with (``evidence.BEST``)."""
        return next(s for s in self.settings if self.evidence.loc[s.label, "verdict"] == evidence.BEST)


def differing_keys(settings: list[Setting], varied: list[str]) -> list[str]:
    """The keys of ``varied`` (in its order) whose values differ between ``settings``."""
    return [k for k in varied if len({s.keys.get(k) for s in settings}) > 1]


def _varied_keys(df: pd.DataFrame) -> list[str]:
    keys: list[str] = []
    for s in df["varied_keys"].astype(str).unique():
        for k in s.split(","):
            k = k.strip()
            if k and k not in keys:
                keys.append(k)
    return keys


def sort_spec(sort: str | None, varied: list[str]) -> tuple[str, bool]:
    """(unambiguous column name, descending) for ``--sort``; default worst first."""
    if sort is None:
        return "validation_sample_error%", True
    name, direction = sort, None
    for suffix in (":asc", ":desc"):
        if sort.endswith(suffix):
            name, direction = sort[: -len(suffix)], suffix == ":desc"
    aliases = {c.name: c.name for c in TABLE_COLUMNS}
    aliases.update({c.log_column: c.name for c in TABLE_COLUMNS
                    if c.log_column and c.statistic in ("mean", "minutes", "params")})
    aliases.update({k: k for k in varied})
    aliases["setting"] = "setting"
    if name not in aliases:
        raise UserError(f"--sort {sort!r}: unknown column (choose from: {', '.join(aliases)}; append :asc or :desc)")
    column = aliases[name]
    if direction is None:  # numbers worst (largest) first like the published tables, keys A-Z
        direction = column not in varied and column != "setting"
    return column, direction


def sort_settings(settings: list[Setting], column: str, descending: bool) -> list[Setting]:
    """Settings ordered by one column (``formats.sort_key``); missing values last, equal
    values by label."""

    def value(s: Setting) -> object:
        return s.label if column == "setting" else s.keys[column] if column in s.keys else s.stats.get(column)

    by_label = sorted(settings, key=lambda s: s.label)
    present = [s for s in by_label if not formats.missing(value(s))]
    present.sort(key=lambda s: formats.sort_key(value(s)), reverse=descending)
    return present + [s for s in by_label if formats.missing(value(s))]


def _names(settings: list[Setting], varied: list[str]) -> None:
    vary = differing_keys(settings, varied) or varied
    for s in settings:
        s.name = " ".join(f"{k}={s.keys[k]}" for k in vary if k in s.keys) or s.label


def refuse_repeated_seeds(df: pd.DataFrame, experiment: str) -> None:
    """UserError if two trials of one setting share a seed.

    Two sweeps written into one folder would otherwise count each seed twice: fake
    replicates that shrink every spread and inflate every test.
    """
    trials = df.drop_duplicates("trial_id")[["trial_id", "setting", "seed"]]
    repeated = trials[trials.duplicated(["setting", "seed"], keep=False)]
    if repeated.empty:
        return
    setting, seed = repeated.iloc[0]["setting"], repeated.iloc[0]["seed"]
    ids = sorted(repeated[(repeated["setting"] == setting) & (repeated["seed"] == seed)]["trial_id"].astype(str))
    count = len(repeated.drop_duplicates(["setting", "seed"]))
    raise UserError(
        f"experiment {experiment}: {len(ids)} trials ({', '.join(ids)}) ran setting {setting!r} with seed {seed:g}"
        f"{f' (and {count - 1} more repeated setting/seed pairs)' if count > 1 else ''}; two sweeps were written "
        "into one folder? Repeated seeds would count as independent replicates, so nothing is analysed: "
        "move one sweep's trial logs elsewhere"
    )


def _analyze_group(df: pd.DataFrame, metric: str, sort: str | None, alpha: float) -> ExperimentResult:
    experiment, space = str(df["experiment"].iloc[0]), str(df["space"].iloc[0])
    varied = _varied_keys(df)
    missing = [k for k in varied if k not in df.columns]
    if missing:
        raise UserError(
            f"experiment {experiment}: varied keys {', '.join(missing)} have no column in the trial logs"
        )
    refuse_repeated_seeds(df, experiment)
    df = df.sort_values(["trial_id", "validation_index"], kind="stable")
    by_trial = df.groupby("trial_id")
    reached_end = by_trial["validation_index"].transform("max") >= by_trial["num_validations"].transform("max")
    # A trial whose loss turned NaN ended there (its last row says so; logs from before that
    # column have none): it is neither finished nor still to come.
    ended_diverged = (df["diverged"].eq(True) if "diverged" in df.columns else pd.Series(False, index=df.index))
    ended_diverged = ended_diverged.groupby(df["trial_id"]).transform("any")
    finished_rows, unfinished_rows = df[reached_end & ~ended_diverged], df[~reached_end & ~ended_diverged]
    diverged_rows = df[ended_diverged]
    # every setting, finished or not, to name the unfinished ones the same way
    every: dict[str, Setting] = {}
    for label, g in df.groupby("setting", sort=True):
        first = g.iloc[0]
        fin = finished_rows[finished_rows["setting"] == label]
        last = fin[fin["validation_index"] == fin.groupby("trial_id")["validation_index"].transform("max")]
        nan = last[~np.isfinite(last[metric].to_numpy(dtype=float))]
        kept = last[~last["trial_id"].isin(nan["trial_id"])]
        every[str(label)] = Setting(
            label=str(label),
            keys={k: formats.display_value(first[k]) for k in varied},
            final=kept.sort_values("seed", kind="stable").reset_index(drop=True),
            curves=fin[fin["trial_id"].isin(kept["trial_id"])].reset_index(drop=True),
            nan_seeds=sorted(int(s) for s in nan["seed"]),
        )
    _names(list(every.values()), varied)
    settings = [s for s in every.values() if len(s.final)]
    for s in settings:
        s.stats = {k: s.keys[k] for k in varied}
        for c in TABLE_COLUMNS:
            values = s.final[c.log_column].to_numpy(dtype=float) if c.log_column else s.final["seed"].to_numpy()
            s.stats[c.name] = column_statistic(values, c.statistic)
            if c.log_column and not np.isfinite(values).all():
                s.nan_cells.setdefault(c.log_column, sorted(int(x) for x in s.final["seed"][~np.isfinite(values)]))
    column, descending = sort_spec(sort, varied)
    settings = sort_settings(settings, column, descending)
    found = evidence.compare_settings(
        {s.label: s.final[metric].to_numpy(dtype=float) for s in sorted(settings, key=lambda s: s.label)},
        lower_is_better=metric not in HIGHER_IS_BETTER,
        alpha=alpha,
    )
    unfinished, diverged = ({every[str(label)].name: int(g["trial_id"].nunique())
                             for label, g in rows.groupby("setting", sort=True)}
                            for rows in (unfinished_rows, diverged_rows))
    result = ExperimentResult(
        experiment=experiment,
        space=space,
        varied_keys=varied,
        metric=metric,
        alpha=alpha,
        settings=settings,
        evidence=found,
        finished=int(finished_rows["trial_id"].nunique()),
        unfinished=unfinished,
        unfinished_ids=sorted(str(t) for t in unfinished_rows["trial_id"].unique()),
        nan_only={s.name: s.nan_seeds for s in every.values() if not len(s.final) and s.nan_seeds},
        diverged=diverged,
        diverged_ids=sorted(str(t) for t in diverged_rows["trial_id"].unique()),
    )
    return result


def experiment_results(
    path: str,
    *,
    space: str | None = None,
    sort: str | None = None,
    metric: str = DEFAULT_METRIC,
    alpha: float = evidence.ALPHA,
) -> list[ExperimentResult]:
    """Read the logs under ``path`` and compute one ExperimentResult per (experiment, space),
    without its sentences (``report.read_results`` adds them).

    ``alpha`` is the family-wise error rate of the verdicts (strictly between 0 and 1).
    """
    if metric not in EVIDENCE_METRICS:
        raise UserError(f"--metric {metric!r}: unknown metric (choose from: {', '.join(EVIDENCE_METRICS)})")
    try:
        alpha = evidence.check_alpha(alpha)
    except ValueError as e:
        raise UserError(f"--alpha: {e}") from None
    df = load_logs(path, space)
    return [_analyze_group(g, metric, sort, alpha) for _, g in df.groupby(["experiment", "space"], sort=True)]
