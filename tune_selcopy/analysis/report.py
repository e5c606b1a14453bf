"""The analysis of a sweep's logs as one report: the results with their sentences
(``read_results``), and the whole text in one format (``report``), as ``analyze`` prints it
and ``run`` prints it at the end of a sweep."""

from __future__ import annotations

from tune_selcopy.analysis.evidence import ALPHA
from tune_selcopy.analysis.render import plot_curves, render_csv, render_json, render_markdown, unfinished_line
from tune_selcopy.analysis.reproduction import check_all, read_reference
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
) -> str:
    """The full report for the logs under ``path`` as text in ``fmt`` (markdown, csv, json).

    Markdown: per (experiment, space) a heading, the published table, the evidence table,
    the sentences, the unfinished line and, with ``reference`` (a CSV file or the name of a
    shipped reference), the reproduction check (and the plot path). JSON: the same data
    as a document. CSV: the table, evidence and reproduction-check columns only (see
    ``notes`` for the rest). If ``plot`` is given, also writes the PNG there. Raises
    UserError on bad input.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    ref = read_reference(reference, metric) if reference else None  # a bad file fails before the logs are read
    results = read_results(path, space=space, sort=sort, metric=metric, alpha=alpha)
    checks = check_all(results, ref) if ref else None
    if plot:
        plot_curves(results, plot)
    if fmt == "csv":
        return render_csv(results, checks)
    if fmt == "json":
        return render_json(results, plot, checks)
    return render_markdown(results, plot, checks)


def notes(results: list[ExperimentResult]) -> list[str]:
    """The sentences and unfinished lines of every experiment (what CSV output leaves out)."""
    out = []
    for res in results:
        out.extend(f"{res.experiment}: {s}" for s in res.sentences)
        out.append(f"{res.experiment}: {unfinished_line(res)}")
    return out


