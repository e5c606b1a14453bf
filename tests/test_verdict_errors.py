"""The verdict procedure's error-rate claim, measured: with k identical settings the share
of sweeps with any false "different" stays at alpha = 5% within Monte-Carlo error, even
though the best is picked from the same seeds; and a setting 2 standard deviations worse
is found. Seeded, so every run sees the same sweeps; bench/verdict_errors.py is the large
version (figures in docs/analysis.md)."""

from __future__ import annotations

import math

import pytest

from tune_selcopy.simulate import NOISES, simulate

SWEEPS = 100
ALPHA = 0.05
CONFIGS = [(noise, k, n) for noise in NOISES for k in (2, 8, 16) for n in (5, 10)]


@pytest.fixture(scope="module")
def null_rates() -> dict:
    return {cfg: simulate(cfg[1], cfg[2], NOISES[cfg[0]], SWEEPS) for cfg in CONFIGS}


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{noise}-k{k}-n{n}" for noise, k, n in CONFIGS])
def test_false_different_rate_per_shape(null_rates, cfg):
    rate = null_rates[cfg].false_different
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SWEEPS), f"{cfg}: {rate:.1%}"


def test_false_different_rate_over_all_shapes(null_rates):
    # 1,800 sweeps together: the binomial standard error at 5% is 0.5 points
    sweeps = SWEEPS * len(CONFIGS)
    rate = sum(r.false_different for r in null_rates.values()) / len(CONFIGS)
    assert rate <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / sweeps), f"{rate:.2%}"


# The power with 1,000 sweeps each (bench/verdict_errors.py, docs/analysis.md), normal noise, 10 seeds.
BENCH_POWER = {2: 0.98, 8: 0.93, 16: 0.84}


@pytest.mark.parametrize("k", sorted(BENCH_POWER))
def test_a_setting_two_std_worse_is_found(k):
    found = simulate(k, 10, NOISES["normal"], SWEEPS, shift=2.0).found
    expected = BENCH_POWER[k]
    assert found >= expected - 4 * math.sqrt(expected * (1 - expected) / SWEEPS), f"k={k}: {found:.0%}"
