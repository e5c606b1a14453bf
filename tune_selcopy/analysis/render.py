"""Rendering the results: the published table, the evidence table, the reproduction check,
as markdown, CSV or JSON, and the learning-curve plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from tune_selcopy.analysis import evidence
from tune_selcopy.analysis.formats import IntRange, fmt_float, fmt_p, plural
from tune_selcopy.analysis.reproduction import SIDE_COLUMNS, ReferenceCheck
from tune_selcopy.analysis.results import TABLE_COLUMNS, ExperimentResult
from tune_selcopy.errors import UserError, one_line


class EvidenceColumn(NamedTuple):
    """One column of the evidence table as markdown shows it."""

    header: str
    cell: Callable[[pd.Series], str]  # a compare_settings row -> the formatted cell


class EvidenceField(NamedTuple):
    """One evidence value in the CSV/JSON rows."""

    name: str  # "{m}" stands for the metric
    column: str  # the compare_settings column


def _ci(r: pd.Series) -> str:
    return "" if math.isnan(r["ci_low"]) else f"[{fmt_float(r['ci_low'])}, {fmt_float(r['ci_high'])}]"


def _shown(column: str, fmt: Callable[[object], str] = fmt_p) -> Callable[[pd.Series], str]:
    return lambda r: fmt(r[column])


EVIDENCE_TABLE = (
    EvidenceColumn("mean", _shown("mean", fmt_float)),
    EvidenceColumn("95% CI (t)", _ci),
    EvidenceColumn("IQM", _shown("iqm", fmt_float)),
    EvidenceColumn("p Welch", _shown("p_welch")),
    EvidenceColumn("p Mann-Whitney", _shown("p_mwu")),
    EvidenceColumn("P(best better)", _shown("p_best_better")),
    EvidenceColumn("Holm p Welch", _shown("holm_welch")),
    EvidenceColumn("Holm p Mann-Whitney", _shown("holm_mwu")),
    EvidenceColumn("min Holm p", _shown("reachable")),
    EvidenceColumn(f"detectable ({evidence.POWER:.0%})", _shown("detectable")),
    EvidenceColumn("verdict", lambda r: str(r["verdict"])),
)

EVIDENCE_FIELDS = (
    EvidenceField("{m} mean", "mean"),
    EvidenceField("{m} 95% CI low (t)", "ci_low"),
    EvidenceField("{m} 95% CI high (t)", "ci_high"),
    EvidenceField("{m} IQM", "iqm"),
    EvidenceField("p Welch", "p_welch"),
    EvidenceField("p Mann-Whitney", "p_mwu"),
    EvidenceField("P(best better)", "p_best_better"),
    EvidenceField("Holm p Welch", "holm_welch"),
    EvidenceField("Holm p Mann-Whitney", "holm_mwu"),
    EvidenceField("min p (any split)", "p_min"),
    EvidenceField("min Holm p (any split)", "reachable"),
    EvidenceField(f"detectable difference ({evidence.POWER:.0%} power)", "detectable"),
    EvidenceField("verdict", "verdict"),
)


def table_rows(result: ExperimentResult) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, formatted rows, column alignments) of the published table."""
    headers = list(result.varied_keys) + [c.header for c in TABLE_COLUMNS]
    align = ["left"] * len(result.varied_keys) + ["right"] * len(TABLE_COLUMNS)
    rows = [[s.keys[k] for k in result.varied_keys] + [c.fmt(s.stats[c.name]) for c in TABLE_COLUMNS]
            for s in result.settings]
    return headers, rows, align


def evidence_rows(result: ExperimentResult) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, formatted rows, alignments) of the evidence table, in table order."""
    headers = list(result.varied_keys) + ["trials"] + [c.header for c in EVIDENCE_TABLE]
    align = ["left"] * len(result.varied_keys) + ["right"] * len(EVIDENCE_TABLE) + ["left"]
    rows = []
    for s in result.settings:
        r = result.evidence.loc[s.label]
        rows.append([s.keys[k] for k in result.varied_keys] + [str(int(r["n"]))] + [c.cell(r) for c in EVIDENCE_TABLE])
    return headers, rows, align


def _plain(v: object) -> object:
    """A JSON-ready value: numpy scalars to Python, NaN to None, ranges to their text."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, IntRange):
        return str(v)
    return v


def records(result: ExperimentResult) -> list[dict]:
    """One dict per setting with raw numbers under unambiguous names (CSV and JSON rows)."""
    out = []
    for s in result.settings:
        r = result.evidence.loc[s.label]
        d: dict[str, object] = {"experiment": result.experiment, "space": result.space, "setting": s.label}
        d.update(s.stats)
        d.update({f.name.format(m=result.metric): r[f.column] for f in EVIDENCE_FIELDS})
        out.append({k: _plain(v) for k, v in d.items()})
    return out


def reference_records(check: ReferenceCheck) -> list[dict]:
    """The reproduction check's rows (both sides, the test and the verdict), raw numbers."""
    return [{k: _plain(v) for k, v in row.items()} for row in check.rows.to_dict("records")]


def evidence_caption(result: ExperimentResult) -> str:
    """The paragraph above the evidence table: what each column is, alpha and the family."""
    pairs = result.evidence.attrs.get("pairs", 0)
    better = "lower" if result.lower_is_better else "higher"
    return (
        f"Evidence on {result.metric} (last validation of each finished trial; {better} is better). "
        "95% CI: Student-t interval of the mean; IQM: interquartile mean (25% trimmed mean). "
        "Against the best setting: two-sided Welch's t-test and Mann-Whitney U test (exact, or exact over all "
        "splits with ties); P(best better) = U / (n1 n2), the probability that a seed of the best beats a seed of "
        f"the setting; Holm-adjusted over the {plural(pairs, 'pair')} of settings, since the best is picked from "
        f"the same seeds. Verdicts at alpha {result.alpha:g}: 'different' needs Holm p Mann-Whitney <= "
        f"{result.alpha:g}; 'inconclusive: too few seeds' when even the most extreme split of the two settings' "
        f"values gives min Holm p > {result.alpha:g}; otherwise 'indistinguishable', with the difference that "
        f"would have been found with {evidence.POWER:.0%} power at {result.alpha:g}/{pairs} (normal noise with "
        "the pair's pooled spread). Welch's test is shown, not used: with a few skewed seeds it is not exact."
    )


def unfinished_line(result: ExperimentResult) -> str:
    """The line under the table counting trials left out of the statistics."""
    n = result.unfinished_count
    total = result.finished + n
    if n == 0:
        return f"All {plural(total, 'trial')} finished."
    parts = ", ".join(f"{name}: {c}" for name, c in result.unfinished.items())
    return f"Unfinished (running or errored), left out of the statistics: {n} of {total} trials ({parts})."


def reference_heading(check: ReferenceCheck) -> str:
    """The markdown heading of a reproduction check."""
    return f"### Reproduction check: {check.experiment} against {check.reference.source}, {check.reference.kind}"


def reference_caption(check: ReferenceCheck) -> str:
    """The paragraph above the reproduction check's table: the test, the family, the verdicts."""
    test = ("Welch's t-test from the reference's mean, std and n" if check.reference.kind == "summary rows"
            else "two-sided Mann-Whitney U test of our seeds against the reference's")
    return (
        f"On {check.reference.metric}, per setting: our seeds and the reference's side by side; {test}; "
        f"Holm-adjusted over the {plural(check.tests, 'setting')} on both sides. At alpha {check.alpha:g}: "
        f"'{evidence.DIFFERS}' needs Holm p <= {check.alpha:g}; '{evidence.INCONCLUSIVE}' when no split of the "
        f"values could reach it (min Holm p > {check.alpha:g}); otherwise '{evidence.CONSISTENT}', with the "
        f"difference that would have been found with {evidence.POWER:.0%} power."
    )


def reference_table(check: ReferenceCheck) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, formatted rows, alignments) of the reproduction check: both sides, test, verdict."""
    keys = check.reference.keys
    headers = (list(keys) + [f"ours {c}" for c in SIDE_COLUMNS] + [f"reference {c}" for c in SIDE_COLUMNS]
               + ["test", "p", "Holm p", "min Holm p", f"detectable ({evidence.POWER:.0%})", "verdict"])
    rows = []
    for _, r in check.rows.iterrows():
        sides = [fmt_p(r[f"{side} n"]) if c == "n" else fmt_float(r[f"{side} {c}"])
                 for side in ("ours", "reference") for c in SIDE_COLUMNS]
        tests = [r["test"]] + [fmt_p(r[c]) for c in ("p", "holm", "reachable", "detectable")] + [r["verdict"]]
        rows.append([str(r[k]) for k in keys] + sides + tests)
    align = ["left"] * len(keys) + ["right"] * (2 * len(SIDE_COLUMNS) + 5) + ["left"]
    return headers, rows, align


def _pipe(table: tuple[list[str], list[list[str]], list[str]]) -> str:
    from tabulate import tabulate

    headers, rows, align = table
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align)


def render_markdown(results: list[ExperimentResult], plot: str | None = None,
                    checks: list[ReferenceCheck] | None = None) -> str:
    """Per (experiment, space): heading, table, evidence, sentences, unfinished line, and
    the reproduction check when there is one."""
    by_experiment = {c.experiment: c for c in checks or []}
    parts = []
    for res in results:
        parts.append(f"## {res.experiment} (space {res.space})")
        if res.settings:
            parts += [_pipe(table_rows(res)), evidence_caption(res), _pipe(evidence_rows(res))]
        else:
            parts.append("No finished trials yet.")
        if res.sentences:
            parts.append("\n".join(res.sentences))
        parts.append(unfinished_line(res))
        check = by_experiment.get(res.experiment)
        if check:
            parts += [reference_heading(check), reference_caption(check), _pipe(reference_table(check)),
                      "\n".join(check.sentences)]
    if plot:
        parts.append(f"Plot written to {plot}.")
    return "\n\n".join(parts) + "\n"


# The reproduction check's test columns as our CSV rows name them (its side columns keep
# their names: reference n, reference mean, ...).
REFERENCE_FIELDS = {
    "test": "reference test",
    "p": "reference p",
    "holm": "reference Holm p",
    "reachable": "reference min Holm p (any split)",
    "detectable": f"reference detectable difference ({evidence.POWER:.0%} power)",
    "verdict": "reference verdict",
}


def render_csv(results: list[ExperimentResult], checks: list[ReferenceCheck] | None = None) -> str:
    """One row per setting; with a reproduction check, its columns (prefixed ``reference``)
    join our rows, and settings only in the reference get rows of their own."""
    rows = [r for res in results for r in records(res)]
    for check in checks or []:
        ours = {(r["experiment"], r["setting"]): r for r in rows}
        for rec in reference_records(check):
            extra = {REFERENCE_FIELDS.get(k, k): v for k, v in rec.items()
                     if k.startswith("reference ") or k in REFERENCE_FIELDS}
            if rec["setting"]:
                ours[(check.experiment, rec["setting"])].update(extra)
            else:
                keys = {k: rec[k] for k in check.reference.keys}
                rows.append({"experiment": check.experiment, "setting": "", **keys, **extra})
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def render_json(results: list[ExperimentResult], plot: str | None = None,
                checks: list[ReferenceCheck] | None = None) -> str:
    """``{"experiments": [...], "plot": FILE or null}``; see docs/analysis.md."""
    by_experiment = {c.experiment: c for c in checks or []}
    experiments = []
    for res in results:
        doc = {
            "experiment": res.experiment,
            "space": res.space,
            "varied_keys": res.varied_keys,
            "metric": res.metric,
            "alpha": res.alpha,
            "pairs": res.evidence.attrs.get("pairs", 0),
            "power": evidence.POWER,
            "rows": records(res),
            "sentences": res.sentences,
            "finished_trials": res.finished,
            "unfinished_trials": res.unfinished_count,
            "unfinished_by_setting": res.unfinished,
            "unfinished_trial_ids": res.unfinished_ids,
            "unfinished_line": unfinished_line(res),
            "nan_seeds": {s.name: s.nan_seeds for s in res.settings if s.nan_seeds} | res.nan_only,
        }
        check = by_experiment.get(res.experiment)
        if check:
            doc["reference_check"] = {
                "reference": check.reference.source,
                "kind": check.reference.kind,
                "keys": check.reference.keys,
                "alpha": check.alpha,
                "tests": check.tests,
                "rows": reference_records(check),
                "sentences": check.sentences,
            }
        experiments.append(doc)
    return json.dumps({"experiments": experiments, "plot": plot}, indent=2) + "\n"


def plot_curves(results: list[ExperimentResult], file: str) -> str:
    """Write a PNG: per setting, the metric (log y) against training inputs, mean line and
    min-max band over the seeds in the statistics; one panel per experiment."""
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
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=f"{s.name} ({plural(len(s.final), 'seed')})")
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
        raise UserError(f"cannot write plot {file}: {one_line(e)}") from None
    finally:
        plt.close(fig)
    return file
