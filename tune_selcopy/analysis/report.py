"""The analysis of a sweep's logs as one report: the results with their sentences
(``read_results``), and the whole text in one format (``report``), as ``analyze`` prints it
and ``run`` prints it at the end of a sweep."""

from __future__ import annotations

from tune_selcopy.analysis.compact import render_compact
from tune_selcopy.analysis.evidence import ALPHA
from tune_selcopy.analysis.finding import finding
from tune_selcopy.analysis.plots import save_plots
from tune_selcopy.analysis.render import render_csv, render_json, render_markdown, unfinished_line
from tune_selcopy.analysis.reproduction import ReferenceCheck, check_all, read_reference
from tune_selcopy.analysis.results import DEFAULT_METRIC, ExperimentResult, experiment_results
from tune_selcopy.analysis.sentences import verdict_sentences
from tune_selcopy.errors import UserError

FORMATS = ("markdown", "csv", "json")


def read_results(
    path: str,
    *,
    space: str | None = None,
    sort: str | None = None,
    metric: str = DEFAULT_METRIC,
    alpha: float = ALPHA,
) -> list[ExperimentResult]:
    """One ExperimentResult per (experiment, space) of the logs under ``path``, with its
    sentences. ``alpha`` is the family-wise error rate of the verdicts (strictly between
    0 and 1). Raises UserError on bad input."""
    results = experiment_results(path, space=space, sort=sort, metric=metric, alpha=alpha)
    for result in results:
        result.sentences = verdict_sentences(result)
    return results


def report(
    path: str,
    *,
    space: str | None = None,
    sort: str | None = None,
    fmt: str = "markdown",
    metric: str = DEFAULT_METRIC,
    plot: str | None = None,
    alpha: float = ALPHA,
    reference: str | None = None,
    detail: bool = False,
) -> str:
    """The report for the logs under ``path`` as text in ``fmt`` (markdown, csv, json).

    Markdown: per (experiment, space) a heading and the finding, then the compact table
    (``compact.render_compact``) or, with ``detail``, the published table, the evidence
    table and the sentences (``render.render_markdown``); the unfinished line and, with
    ``reference`` (a CSV file or the name of a shipped reference), the reproduction check.
    JSON: all of it as a document. CSV: the table, evidence and reproduction-check columns
    (``notes`` has the rest). With ``plot`` (a PNG path or URI), also writes the curves there
    and the interval plot next to it (``plots.save_plots``). Raises UserError on bad input.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    results, checks, plots = gather(path, space=space, sort=sort, metric=metric, plot=plot, alpha=alpha,
                                    reference=reference)
    return render(results, checks, fmt, plots, detail)


def gather(
    path: str,
    *,
    space: str | None = None,
    sort: str | None = None,
    metric: str = DEFAULT_METRIC,
    plot: str | None = None,
    alpha: float = ALPHA,
    reference: str | None = None,
) -> tuple[list[ExperimentResult], list[ReferenceCheck] | None, list[str] | None]:
    """What a report shows, before it is rendered: the results, the reproduction checks
    (None without ``reference``) and the plots written (None without ``plot``)."""
    ref = read_reference(reference, metric) if reference else None  # a bad file fails before the logs are read
    results = read_results(path, space=space, sort=sort, metric=metric, alpha=alpha)
    checks = check_all(results, ref) if ref else None
    plots = save_plots(results, plot) if plot else None
    return results, checks, plots


def render(results: list[ExperimentResult], checks: list[ReferenceCheck] | None, fmt: str,
           plots: list[str] | None = None, detail: bool = False) -> str:
    """The text of a report in ``fmt`` from its parts (``report`` without the reading)."""
    if fmt == "csv":
        return render_csv(results, checks)
    if fmt == "json":
        return render_json(results, plots, checks)
    return (render_markdown if detail else render_compact)(results, plots, checks)


def notes(results: list[ExperimentResult], checks: list[ReferenceCheck] | None = None) -> list[str]:
    """What CSV output leaves out, prefixed by the experiment: its finding, sentences and
    unfinished line, and the reproduction check's sentences."""
    by_experiment = {c.experiment: c for c in checks or []}
    out = []
    for res in results:
        check = by_experiment.get(res.experiment)
        out.append(f"{res.experiment}: {finding(res, check)}")
        out.extend(f"{res.experiment}: {s}" for s in res.sentences + (check.sentences if check else []))
        out.append(f"{res.experiment}: {unfinished_line(res)}")
    return out
