"""The default report: per experiment the finding, then one table of the seeds' evidence
that fits a terminal (at most ``WIDTH`` columns), the notes that matter, and the
reproduction check in the same compact form. ``--detail`` prints the published table and
every test instead (``render.render_markdown``)."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from tune_selcopy.analysis import evidence
from tune_selcopy.analysis.finding import finding
from tune_selcopy.analysis.formats import fmt_sig, plural, unit
from tune_selcopy.analysis.render import Table, pipe, plots_line, unfinished_line
from tune_selcopy.analysis.reproduction import ReferenceCheck
from tune_selcopy.analysis.results import ExperimentResult, differing_keys
from tune_selcopy.analysis.sentences import identical_settings_warnings, left_out_sentences

#: The widest line of a compact table (and the width prose is wrapped at).
WIDTH = 100
#: Verdicts as the compact tables print them (the others as they are).
SHORT = {evidence.INCONCLUSIVE: "too few seeds", evidence.CONSISTENT: "consistent", evidence.DIFFERS: "differs"}
SEEDS = "seeds, sorted"


def wrap(text: str) -> str:
    """Prose wrapped at ``WIDTH`` columns, never inside a word."""
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def table_keys(result: ExperimentResult) -> list[str]:
    """The key columns of the compact table: the keys whose values differ (all varied keys
    when there is one setting)."""
    return differing_keys(result.settings, result.varied_keys) or list(result.varied_keys)


def settings_table(result: ExperimentResult) -> list[Table]:
    """The compact table: per setting its key values, n, mean with the half-width of its 95%
    t interval, IQM, the seeds' values sorted, and the verdict against the best. Values print
    with 3 significant digits, the interval's half-width with 2. When that is wider than
    ``WIDTH`` (10 seeds do not fit), the seeds get a table of their own under it."""
    keys = table_keys(result)
    m = result.metric
    rows = []
    for s in result.settings:
        r = result.evidence.loc[s.label]
        half = r["ci_high"] - r["mean"]
        mean = fmt_sig(r["mean"]) + ("" if math.isnan(half) else f" ± {fmt_sig(half, 2)}")
        seeds = " ".join(fmt_sig(v) for v in np.sort(s.final[m].to_numpy(dtype=float)))
        verdict = "" if len(result.settings) == 1 else SHORT.get(r["verdict"], r["verdict"])
        rows.append([s.keys[k] for k in keys] + [str(int(r["n"])), mean, fmt_sig(r["iqm"]), seeds, verdict])
    headers = keys + ["n", "mean ± 95% CI", "IQM", SEEDS, "verdict"]
    align = ["left"] * len(keys) + ["right"] * 3 + ["left"] * 2
    whole = (headers, rows, align)
    if max(len(line) for line in pipe(whole).splitlines()) <= WIDTH:
        return [whole]
    at = headers.index(SEEDS)
    drop = [i for i in range(len(headers)) if i != at]
    keep = list(range(len(keys))) + [at]
    return [([headers[i] for i in drop], [[row[i] for i in drop] for row in rows], [align[i] for i in drop]),
            ([headers[i] for i in keep], [[row[i] for i in keep] for row in rows], ["left"] * len(keep))]


def settings_caption(result: ExperimentResult) -> str:
    """The line above the compact table: the metric and its unit, the direction, the test
    behind the verdicts, and the keys every setting shares."""
    u = unit(result.metric).value.strip()
    better = "lower" if result.lower_is_better else "higher"
    pairs = result.evidence.attrs.get("pairs", 0)
    text = f"{result.metric}{f' in {u}' if u else ''} at each seed's last validation, {better} is better"
    if pairs:
        text += (f"; verdicts against the best at alpha {result.alpha:g} (two-sided Mann-Whitney, Holm over "
                 f"{plural(pairs, 'pair')} of settings)")
    shared = [k for k in result.varied_keys if k not in table_keys(result)]
    if shared:
        text += "; every setting has " + " ".join(f"{k}={result.settings[0].keys[k]}" for k in shared)
    return text + ":"


def reference_table(check: ReferenceCheck) -> Table:
    """The compact reproduction check: per setting on either side its key values, our mean
    (n), the reference's mean (n), Holm p, the difference these seeds would have found with
    80% power, and the verdict."""
    rows = check.rows
    keys = [k for k in check.reference.keys if rows[k].nunique() > 1] or list(check.reference.keys)
    size_unit = unit(check.reference.metric).difference
    out = []
    for _, r in rows.iterrows():
        if r["detectable_note"]:
            size = "not computable"
        else:
            size = "" if math.isnan(r["detectable"]) else f"{fmt_sig(r['detectable'], 2)}{size_unit}"
        out.append([str(r[k]) for k in keys] + [_side(r, "ours"), _side(r, "reference"), fmt_sig(r["holm"], 2), size,
                                                SHORT.get(r["verdict"], r["verdict"])])
    headers = keys + ["ours (n)", "reference (n)", "Holm p", f"detectable ({evidence.POWER:.0%})", "verdict"]
    return headers, out, ["left"] * len(keys) + ["right"] * 4 + ["left"]


def _side(r: pd.Series, side: str) -> str:
    n = r[f"{side} n"]
    return "" if n != n else f"{fmt_sig(r[f'{side} mean'])} ({int(n)})"


def reference_caption(check: ReferenceCheck) -> str:
    """The line above the compact reproduction check."""
    test = ("Welch's t-test from its mean, std and n" if check.reference.kind == "summary rows"
            else "two-sided Mann-Whitney against its runs")
    return (f"Reproduction check against {check.reference.source}, {check.reference.kind}: {test}, Holm over "
            f"{plural(check.tests, 'setting')}, alpha {check.alpha:g}:")


def render_compact(results: list[ExperimentResult], plots: list[str] | None = None,
                   checks: list[ReferenceCheck] | None = None) -> str:
    """The default Markdown report: per (experiment, space) a heading, the finding, the
    compact table, the seeds left out, warnings and the unfinished line, and the compact
    reproduction check; then the plots written and where the rest is."""
    by_experiment = {c.experiment: c for c in checks or []}
    parts = []
    for res in results:
        check = by_experiment.get(res.experiment)
        parts += [f"## {res.experiment} (space {res.space})", wrap(finding(res, check))]
        if res.settings:
            parts += [wrap(settings_caption(res))] + [pipe(t) for t in settings_table(res)]
        notes = left_out_sentences(res) + identical_settings_warnings(res) + [unfinished_line(res)]
        parts.append("\n".join(wrap(n) for n in notes))
        if check:
            parts += [wrap(reference_caption(check)), pipe(reference_table(check))]
    if plots:
        parts.append(plots_line(plots))
    parts.append("The published table and every test behind the verdicts: analyze --detail.")
    return "\n\n".join(parts) + "\n"
