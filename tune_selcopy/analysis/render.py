"""Rendering the results in full: the published table, the evidence table, the reproduction
check, as Markdown (``--detail``), CSV or JSON. (The default report is ``compact``, the
plots are ``plots``.)"""

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
from tune_selcopy.analysis.finding import finding, no_rows_reason
from tune_selcopy.analysis.formats import IntRange, fmt_float, fmt_p, plural
from tune_selcopy.analysis.reproduction import SIDE_COLUMNS, ReferenceCheck
from tune_selcopy.analysis.results import TABLE_COLUMNS, ExperimentResult

#: A table to print: headers, formatted rows, column alignments.
Table = tuple[list[str], list[list[str]], list[str]]


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


def _p_ci(r: pd.Series) -> str:
    return "" if math.isnan(r["p_better_low"]) else f"[{r['p_better_low']:.2f}, {r['p_better_high']:.2f}]"


def _shown(column: str, fmt: Callable[[object], str] = fmt_p) -> Callable[[pd.Series], str]:
    return lambda r: fmt(r[column])


EVIDENCE_TABLE = (
    EvidenceColumn("mean", _shown("mean", fmt_float)),
    EvidenceColumn("95% CI (t)", _ci),
    EvidenceColumn("IQM", _shown("iqm", fmt_float)),
    EvidenceColumn("p Welch", _shown("p_welch")),
    EvidenceColumn("p Mann-Whitney", _shown("p_mwu")),
    EvidenceColumn("P(best better)", _shown("p_best_better")),
    EvidenceColumn("its 95% CI", _p_ci),
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
    EvidenceField("{m} IQM 95% CI low (trimmed t)", "iqm_low"),
    EvidenceField("{m} IQM 95% CI high (trimmed t)", "iqm_high"),
    EvidenceField("p Welch", "p_welch"),
    EvidenceField("p Mann-Whitney", "p_mwu"),
    EvidenceField("P(best better)", "p_best_better"),
    EvidenceField("P(best better) 95% CI low (Newcombe)", "p_better_low"),
    EvidenceField("P(best better) 95% CI high (Newcombe)", "p_better_high"),
    EvidenceField("Holm p Welch", "holm_welch"),
    EvidenceField("Holm p Mann-Whitney", "holm_mwu"),
    EvidenceField("min p (any split)", "p_min"),
    EvidenceField("min Holm p (any split)", "reachable"),
    EvidenceField(f"detectable difference ({evidence.POWER:.0%} power)", "detectable"),
    EvidenceField("detectable difference note", "detectable_note"),
    EvidenceField("verdict", "verdict"),
)


def table_rows(result: ExperimentResult) -> Table:
    """(headers, formatted rows, column alignments) of the published table."""
    headers = list(result.varied_keys) + [c.header for c in TABLE_COLUMNS]
    align = ["left"] * len(result.varied_keys) + ["right"] * len(TABLE_COLUMNS)
    rows = [[s.keys[k] for k in result.varied_keys] + [c.fmt(s.stats[c.name]) for c in TABLE_COLUMNS]
            for s in result.settings]
    return headers, rows, align


def evidence_rows(result: ExperimentResult) -> Table:
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
        "the setting, with Newcombe's 95% score interval; "
        f"Holm-adjusted over the {plural(pairs, 'pair')} of settings, since the best is picked from the same seeds. "
        f"Verdicts at alpha {result.alpha:g}: 'different' needs Holm p Mann-Whitney <= "
        f"{result.alpha:g}; 'inconclusive: too few seeds' when even the most extreme split of the two settings' "
        f"values gives min Holm p > {result.alpha:g}; otherwise 'indistinguishable', with the difference that "
        f"would have been found with {evidence.POWER:.0%} power at {result.alpha:g}/{pairs} (normal noise with "
        "the pair's pooled spread). Welch's test is shown, not used: with a few skewed seeds it is not exact."
    )


def unfinished_line(result: ExperimentResult) -> str:
    """The line under the table counting trials left out of the statistics: unfinished
    ones (running or errored) and diverged ones (their loss turned NaN or infinite)."""
    total = result.finished + result.unfinished_count + result.diverged_count
    if not result.unfinished_count and not result.diverged_count:
        return f"All {plural(total, 'trial')} finished."
    lines = []
    for why, by_setting in (("Unfinished (running or errored)", result.unfinished),
                            ("Diverged (the loss turned NaN or infinite)", result.diverged)):
        if by_setting:
            parts = ", ".join(f"{name}: {c}" for name, c in by_setting.items())
            lines.append(f"{why}, left out of the statistics: {sum(by_setting.values())} of {total} trials ({parts}).")
    return " ".join(lines)


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


def reference_table(check: ReferenceCheck) -> Table:
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


def pipe(table: Table) -> str:
    """A Markdown pipe table, cells as given."""
    from tabulate import tabulate

    headers, rows, align = table
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align)


def plots_line(plots: list[str]) -> str:
    """``Plot written to a.png.`` / ``Plots written to a.png and a-intervals.png.``"""
    return f"Plot{'s' if len(plots) > 1 else ''} written to {' and '.join(plots)}."


def render_markdown(results: list[ExperimentResult], plots: list[str] | None = None,
                    checks: list[ReferenceCheck] | None = None) -> str:
    """The full report (``--detail``). Per (experiment, space): heading, the finding, the
    published table, the evidence, sentences, unfinished line, and the reproduction check
    when there is one."""
    by_experiment = {c.experiment: c for c in checks or []}
    parts = []
    for res in results:
        parts += [f"## {res.experiment} (space {res.space})", finding(res, by_experiment.get(res.experiment))]
        if res.settings:
            parts += [pipe(table_rows(res)), evidence_caption(res), pipe(evidence_rows(res))]
        else:
            reason = no_rows_reason(res)
            parts.append(f"{reason[0].upper()}{reason[1:]}.")
        if res.sentences:
            parts.append("\n".join(res.sentences))
        parts.append(unfinished_line(res))
        check = by_experiment.get(res.experiment)
        if check:
            parts += [reference_heading(check), reference_caption(check), pipe(reference_table(check)),
                      "\n".join(check.sentences)]
    if plots:
        parts.append(plots_line(plots))
    return "\n\n".join(parts) + "\n"


# The reproduction check's test columns as our CSV rows name them (its side columns keep
# their names: reference n, reference mean, ...).
REFERENCE_FIELDS = {
    "test": "reference test",
    "p": "reference p",
    "holm": "reference Holm p",
    "reachable": "reference min Holm p (any split)",
    "detectable": f"reference detectable difference ({evidence.POWER:.0%} power)",
    "detectable_note": "reference detectable difference note",
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


def render_json(results: list[ExperimentResult], plots: list[str] | None = None,
                checks: list[ReferenceCheck] | None = None) -> str:
    """``{"experiments": [...], "plot": the curves' FILE or null, "plots": [FILE, ...]}``;
    see docs/analysis.md."""
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
            "finding": finding(res, by_experiment.get(res.experiment)),
            "rows": records(res),
            "sentences": res.sentences,
            "finished_trials": res.finished,
            "unfinished_trials": res.unfinished_count,
            "unfinished_by_setting": res.unfinished,
            "unfinished_trial_ids": res.unfinished_ids,
            "diverged_trials": res.diverged_count,
            "diverged_by_setting": res.diverged,
            "diverged_trial_ids": res.diverged_ids,
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
    plots = plots or []
    return json.dumps({"experiments": experiments, "plot": plots[0] if plots else None, "plots": plots},
                      indent=2) + "\n"
