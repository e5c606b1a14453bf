"""The two plots of a report, written side by side: the learning curves (``curves.png``) and
the interval plot (``intervals.png``: per setting its mean and IQM with their 95%
intervals and its seeds, and the probability that the best beats it, rliable style)."""

from __future__ import annotations

import io
import math
import posixpath
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from tune_selcopy import uris
from tune_selcopy.analysis.formats import plural, unit
from tune_selcopy.analysis.results import ExperimentResult, differing_keys
from tune_selcopy.errors import UserError, one_line
from tune_selcopy.trial_logs import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def intervals_file(curves: str) -> str:
    """Where the interval plot goes next to the curves plot ``curves``: ``curves.png`` ->
    ``intervals.png``, ``x-curves.png`` -> ``x-intervals.png``, ``x.png`` -> ``x-intervals.png``."""
    folder, name = uris.split_name(curves)  # a URI's query stays with the folder
    stem, ext = posixpath.splitext(name)
    if stem == "curves" or stem.endswith("-curves"):
        stem = stem[: -len("curves")] + "intervals"
    else:
        stem += "-intervals"
    return uris.join(folder, stem + (ext or ".png"))


def save_plots(results: list[ExperimentResult], curves: str) -> list[str]:
    """Write the curves plot to ``curves`` (a local path or a URI) and the interval plot to
    ``intervals_file(curves)``; return both. UserError if a file cannot be written."""
    files = [curves, intervals_file(curves)]
    for figure, file in zip((curves_figure(results), intervals_figure(results)), files):
        _write(figure, file)
    return files


def _write(fig: Figure, file: str) -> None:
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    try:
        fs, path = uris.resolve(file)
        uris.make_dirs(fs, posixpath.dirname(path))  # `--plot results/x.png` in a fresh checkout
        write_atomically(fs, path, png.getvalue())
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"cannot write plot {file}: {one_line(e)}") from None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(results: list[ExperimentResult]) -> Figure:
    """Per setting, the metric (log y) against training inputs, mean line and min-max band
    over the seeds in the statistics; one panel per experiment."""
    plt = _pyplot()
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
            ax.legend(fontsize="small", title=_shared_keys(res), title_fontsize="small")
        else:
            ax.text(0.5, 0.5, "no finished trials", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def _shared_keys(res: ExperimentResult) -> str | None:
    """``qkv=QK attn=0,0,T``: the varied keys every setting shares (None for one setting)."""
    if len(res.settings) < 2:
        return None
    differ = differing_keys(res.settings, res.varied_keys)
    fixed = [k for k in res.varied_keys if k not in differ]
    return " ".join(f"{k}={res.settings[0].keys[k]}" for k in fixed) or None


def intervals_figure(results: list[ExperimentResult]) -> Figure:
    """One row of three panels per experiment, one line per setting in table order: its mean
    with the 95% t interval, its IQM with the 95% trimmed-t interval (both on one x scale,
    the seeds as dots), and P(best better) with Newcombe's 95% interval."""
    plt = _pyplot()
    panels = [r for r in results if r.settings] or results
    heights = [1.7 + 0.42 * max(len(r.settings), 1) for r in panels]
    fig = plt.figure(figsize=(12, sum(heights)), layout="constrained")
    for sub, res in zip(np.atleast_1d(fig.subfigures(len(panels), 1, height_ratios=heights)), panels):
        row = sub.subplots(1, 3, width_ratios=[1, 1, 0.8])
        shared = _shared_keys(res)
        better = "lower" if res.lower_is_better else "higher"
        sub.suptitle(f"{res.experiment} (space {res.space}{f', {shared}' if shared else ''}): "
                     f"each seed's last validation (dots), {better} is better", x=0.01, ha="left")
        if res.settings:
            _interval_row(row, res)
        else:
            for ax in row:
                ax.set_axis_off()
            row[1].text(0.5, 0.5, "no finished trials", ha="center", va="center", transform=row[1].transAxes)
    return fig


def _interval_row(row, res: ExperimentResult) -> None:
    ax_mean, ax_iqm, ax_p = row
    ev, m = res.evidence, res.metric
    y = np.arange(len(res.settings))[::-1]  # the table's first row at the top
    best = res.best
    for i, (s, at) in enumerate(zip(res.settings, y)):
        r, color = ev.loc[s.label], f"C{i % 10}"
        seeds = s.final[m].to_numpy(dtype=float)
        for ax, centre, low, high in ((ax_mean, r["mean"], r["ci_low"], r["ci_high"]),
                                      (ax_iqm, r["iqm"], r["iqm_low"], r["iqm_high"])):
            _interval(ax, at, centre, low, high, color)
            ax.plot(seeds, np.full(seeds.size, at), "o", color="black", markersize=3, alpha=0.55, zorder=3)
        if s is best:
            ax_p.text(0.02, at, "(the best)", ha="left", va="center", fontsize="small", color="grey")
        else:  # not the best: there are two settings at least
            _interval(ax_p, at, r["p_best_better"], r["p_better_low"], r["p_better_high"], color)
    low, high = ax_mean.get_xlim()
    ax_iqm.set_xlim(min(low, ax_iqm.get_xlim()[0]), max(high, ax_iqm.get_xlim()[1]))
    ax_mean.set_xlim(ax_iqm.get_xlim())
    ax_p.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax_p.set_xlim(0, 1)
    label = f"{m}{f' ({unit(m).value.strip()})' if unit(m).value else ''}"
    panels = ((ax_mean, "mean, 95% CI (t)", label), (ax_iqm, "IQM, 95% CI (trimmed t)", label),
              (ax_p, f"P({best.name} beats it), 95% CI", "probability of improvement (0.5: a coin flip)"))
    for ax, title, xlabel in panels:
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.set_yticks(y, [s.name for s in res.settings] if ax is ax_mean else [])
        ax.set_ylim(-0.8, len(res.settings) - 0.2)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)

def _interval(ax, at: float, centre: float, low: float, high: float, color: str) -> None:
    """rliable's interval bar: the interval as a thick bar, the estimate as a black tick."""
    if math.isfinite(low):
        ax.barh(at, high - low, left=low, height=0.6, color=color, alpha=0.75)
    ax.vlines(centre, at - 0.3, at + 0.3, color="black", linewidth=2, zorder=4)
