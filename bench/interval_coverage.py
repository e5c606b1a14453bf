"""Coverage of the analysis' 95% intervals at the seed counts of a sweep, against the
stratified bootstrap that rliable uses.

- P(improvement): theta = P(a seed of one setting beats a seed of the other), ties counting
  half, for n vs n seeds of N(0, 1) against N(shift, 1) (theta = Phi(shift / sqrt 2)) and of
  "ties at 0" noise (max(0, N(-0.5, 1)), 69% of the seeds at exactly 0; theta by 2,000,000
  draws). Ours: Newcombe's score interval (``stats.improvement_ci``); rliable's: the
  percentile interval of U / (n1 n2) over bootstrap resamples drawn within each setting.
- IQM: the interquartile mean of N(0, 1) (0) and of lognormal(0, 1) (by 4,000,000 draws).
  Ours: the trimmed t interval (``stats.iqm_ci``); rliable's: the percentile bootstrap.

Usage: ``python bench/interval_coverage.py [--sweeps 2000] [--resamples 2000]``. Prints
Markdown tables (coverage in %, with its binomial standard error, and the mean width);
docs/analysis.md records the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_selcopy.analysis import stats as st  # noqa: E402


def better(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(a value of y beats a value of x), ties half: x (..., n1), y (..., n2) -> (...)."""
    d = y[..., None, :] - x[..., :, None]
    return ((d > 0) + 0.5 * (d == 0)).mean(axis=(-1, -2))


def large_sample_theta(x: np.ndarray, y: np.ndarray) -> float:
    """``better`` for large 1-D samples, by ranks (Mann-Whitney U of y over x, ties half)."""
    return float(stats.mannwhitneyu(y, x, method="asymptotic").statistic / (x.size * y.size))


def bootstrap_interval(statistic, samples: list[np.ndarray], rng: np.random.Generator,
                       resamples: int) -> tuple[float, float]:
    """The 95% percentile interval of ``statistic`` over resamples of each sample on its own
    (rliable's stratified bootstrap, the strata being the settings)."""
    drawn = [s[rng.integers(0, s.size, (resamples, s.size))] for s in samples]
    low, high = np.quantile(statistic(*drawn), [0.025, 0.975])
    return float(low), float(high)


def cell(hits: np.ndarray, widths: np.ndarray) -> str:
    share = hits.mean()
    return f"{100 * share:.1f} ± {100 * math.sqrt(share * (1 - share) / hits.size):.1f} (width {widths.mean():.2f})"


def improvement_rows(sweeps: int, resamples: int, rng: np.random.Generator) -> None:
    print("| noise | seeds | theta | Newcombe (ours) | stratified bootstrap |")
    print("|:--|--:|--:|--:|--:|")
    noises = {"normal": lambda size, shift: rng.standard_normal(size) + shift,
              "ties at 0": lambda size, shift: np.maximum(0.0, rng.normal(-0.5 + shift, 1.0, size))}
    for name, draw in noises.items():
        for n in (3, 5, 10):
            for shift in (0.0, 0.75, 1.5, 3.0):
                theta = (stats.norm.cdf(shift / math.sqrt(2)) if name == "normal"
                         else large_sample_theta(draw(2_000_000, 0.0), draw(2_000_000, shift)))
                x, y = draw((sweeps, n), 0.0), draw((sweeps, n), shift)
                p = better(x, y)
                low, high = st.improvement_ci(p, n, n)
                boot = np.array([bootstrap_interval(better, [a, b], rng, resamples) for a, b in zip(x, y)])
                ours = (low <= theta) & (theta <= high)
                theirs = (boot[:, 0] <= theta) & (theta <= boot[:, 1])
                print(f"| {name} | {n} | {theta:.3f} | {cell(ours, high - low)} | "
                      f"{cell(theirs, boot[:, 1] - boot[:, 0])} |", flush=True)


def iqm_rows(sweeps: int, resamples: int, rng: np.random.Generator) -> None:
    print("\n| noise | seeds | trimmed t (ours) | bootstrap |")
    print("|:--|--:|--:|--:|")
    population = rng.lognormal(0, 1, 4_000_000)
    noises = {"normal": (lambda size: rng.standard_normal(size), 0.0),
              "lognormal": (lambda size: rng.lognormal(0, 1, size), float(st.iqm(population)))}
    for name, (draw, truth) in noises.items():
        for n in (3, 4, 5, 8, 10):
            x = draw((sweeps, n))
            low, high = st.iqm_ci(x)
            boot = np.array([bootstrap_interval(lambda a: stats.trim_mean(a, 0.25, axis=-1), [a], rng, resamples)
                             for a in x])
            ours = (low <= truth) & (truth <= high)
            theirs = (boot[:, 0] <= truth) & (truth <= boot[:, 1])
            print(f"| {name} | {n} | {cell(ours, high - low)} | {cell(theirs, boot[:, 1] - boot[:, 0])} |",
                  flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweeps", type=int, default=2000, help="simulated sweeps per cell")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    args = p.parse_args()
    start = time.perf_counter()
    print(f"{args.sweeps} sweeps per cell, {args.resamples} bootstrap resamples; {platform.node()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
    rng = np.random.default_rng(0)
    improvement_rows(args.sweeps, args.resamples, rng)
    iqm_rows(args.sweeps, args.resamples, rng)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
