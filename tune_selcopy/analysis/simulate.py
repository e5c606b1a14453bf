"""Monte-Carlo check of a verdict procedure on simulated sweeps.

A simulated sweep has k settings of n seeds each, drawn from one noise distribution. With
every setting identical, any "different" verdict is false: the share of sweeps with at
least one is the family-wise error rate the procedure claims to hold at alpha. With one
setting made worse by ``shift`` standard deviations of the noise, the share of sweeps
that call it "different" is the procedure's power. Used by tests/test_verdict_errors.py
(small, in CI) and bench/verdict_errors.py (large, figures in docs/analysis.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from tune_selcopy.analysis.evidence import DIFFERENT, compare_settings

Procedure = Callable[[Mapping[str, np.ndarray]], pd.DataFrame]


class Noise(NamedTuple):
    """A seed-noise distribution: a sampler and its standard deviation."""

    name: str
    draw: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    std: float


def _censored_std(mu: float) -> float:
    """Standard deviation of max(0, X) for X ~ N(mu, 1)."""
    cdf, pdf = stats.norm.cdf(mu), stats.norm.pdf(mu)
    mean = mu * cdf + pdf
    second = (mu**2 + 1) * cdf + mu * pdf
    return math.sqrt(second - mean**2)


NOISES = {
    "normal": Noise("normal", lambda rng, shape: rng.standard_normal(shape), 1.0),
    # lognormal(0, 1): a long right tail, like the error rates of seeds that train badly
    "skewed": Noise("skewed", lambda rng, shape: rng.lognormal(0.0, 1.0, shape),
                    math.sqrt((math.e - 1) * math.e)),
    # max(0, N(-0.5, 1)): 69% of the seeds at exactly 0, like the error rates of a solved task
    "ties at 0": Noise("ties at 0", lambda rng, shape: np.maximum(0.0, rng.normal(-0.5, 1.0, shape)),
                       _censored_std(-0.5)),
}


class Rates(NamedTuple):
    """Shares of simulated sweeps, with their binomial standard errors."""

    sweeps: int
    false_different: float  # share of sweeps with a "different" verdict on an unshifted setting
    found: float  # share of sweeps where the shifted setting is "different" (NaN without a shift)

    def stderr(self, share: float) -> float:
        return math.sqrt(max(share * (1 - share), 1e-12) / self.sweeps)


def simulate(k: int, n: int, noise: Noise, sweeps: int, shift: float = 0.0, seed: int = 0,
             procedure: Procedure = compare_settings) -> Rates:
    """Run ``procedure`` on ``sweeps`` simulated sweeps of k settings x n seeds.

    Setting ``s00`` is worse (larger) by ``shift`` noise standard deviations; the others
    are identical. The draws depend only on (seed, k, n, noise name), so two procedures
    simulated with the same arguments see the same sweeps.
    """
    rng = np.random.default_rng([seed, k, n, list(NOISES).index(noise.name)])
    labels = [f"s{i:02d}" for i in range(k)]
    false = found = 0
    for _ in range(sweeps):
        values = noise.draw(rng, (k, n))
        values[0] += shift * noise.std
        verdicts = procedure(dict(zip(labels, values)))["verdict"]
        false += bool((verdicts.iloc[1:] == DIFFERENT).any() or (shift == 0 and verdicts.iloc[0] == DIFFERENT))
        found += bool(verdicts.iloc[0] == DIFFERENT)
    return Rates(sweeps, false / sweeps, found / sweeps if shift else math.nan)
