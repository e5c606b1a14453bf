"""What ``run --dry-run`` says a sweep costs: the arithmetic on an injected throughput, and
the short measurement behind it."""

from __future__ import annotations

import re

import pytest

from tune_selcopy import run
from tune_selcopy.science.trial import TrialConfig
from tune_selcopy.sweeps import cost
from tune_selcopy.sweeps.space_sources import load_space

ATTN_INVENT = load_space("attn_invent").resolve()


def test_the_full_attn_invent_on_a_two_core_machine():
    """160 trials of 1M inputs at 1,650 inputs/s with ten 1.4 s validations: 620 s a trial,
    27.6 CPU-hours; two at a time, 80 rounds: 13.8 hours of wall time."""
    throughput = cost.Throughput(inputs_per_s=1_650, validation_s=1.4, how="injected")
    c = cost.estimate(ATTN_INVENT.settings, ATTN_INVENT.seeds, throughput, "CPU", 1.0, at_once=2)
    assert c.trials == 160
    assert c.trial_s == pytest.approx(1_000_000 / 1_650 + 10 * 1.4)
    assert c.resource_hours == pytest.approx(160 * c.trial_s / 3600) and round(c.resource_hours, 1) == 27.6
    assert c.wall_s == pytest.approx(80 * c.trial_s) and round(c.wall_s / 3600, 1) == 13.8
    lines = cost.describe(c, throughput, "this machine: 2 CPUs; 1 CPU per trial")
    assert lines[0] == "cost estimate: 160 trials of ~10.3 min each, 27.6 CPU-hours (1 CPU per trial)"
    assert lines[1] == "  wall time ~13.8 hours at 2 trials at once (this machine: 2 CPUs; 1 CPU per trial)"
    assert "1,650 training inputs/s per trial, 1.4 s per validation" in lines[2] and lines[3] == "  (injected)"
    assert all(len(line) <= 100 for line in lines)


def test_rounds_gpu_hours_and_an_unknown_concurrency():
    settings = [{"max_inputs": 600_000, "num_validations": 6}] * 5
    throughput = cost.Throughput(inputs_per_s=10_000, validation_s=0.5, how="injected")
    # 5 trials of 63 s, 2 at a time: 3 rounds; a quarter GPU each
    c = cost.estimate(settings, 1, throughput, "GPU", 0.25, at_once=2)
    assert c.trial_s == pytest.approx(63) and c.wall_s == pytest.approx(3 * 63)
    assert c.resource_hours == pytest.approx(5 * 63 * 0.25 / 3600)
    unknown = cost.estimate(settings, 1, throughput, "GPU", 0.25, at_once=None)
    assert unknown.wall_s is None
    assert "over the trials that run at once (--max-concurrent)" in cost.describe(unknown, throughput, "--max-concurrent")[1]


def test_the_measurement_trains_the_setting_for_the_time_asked():
    config = {**TrialConfig(channels=16, val_count=200).flat()}
    t = cost.measure(config, "cpu", 1, seconds=0.3)
    assert t.inputs_per_s > 0 and t.validation_s > 0
    timed, steps = re.fullmatch(r"the first setting for ([0-9.]+) s, (\d+) steps, on cpu with 1 thread", t.how).groups()
    assert float(timed) >= 0.3 and int(steps) >= cost.MIN_STEPS


def test_side_by_side_copies_are_timed_together():
    config = {**TrialConfig(channels=16, val_count=200).flat()}
    t = cost.measure(config, "cpu", 1, seconds=0.3, side_by_side=2)
    assert t.inputs_per_s > 0 and "2 side by side" in t.how and t.how.count("/s") == 2


def test_dry_run_prints_the_estimate(capsys, monkeypatch):
    monkeypatch.setattr(cost, "PROBE_SECONDS", 0.3)
    assert run.main(["attn_act", "--dry-run", "--val-count", "200", "--max-concurrent", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cost estimate: 10 trials of ~"))
    assert "CPU-hours (1 CPU per trial)" in lines[start]
    assert lines[start + 1].startswith("  wall time ~") and "at 1 trial at once (this machine:" in lines[start + 1]
    assert "measured here just now:" in lines[start + 2]


def test_seed_stacks_make_fewer_longer_trials():
    """10 seeds of 2 settings in stacks of 3: 4 trials per setting (3+3+3+1), each as long as
    one seed at the stack's per-seed throughput."""
    settings = [{"max_inputs": 600_000, "num_validations": 6}] * 2
    throughput = cost.Throughput(inputs_per_s=1_000, validation_s=1.0, how="injected")
    c = cost.estimate(settings, 10, throughput, "CPU", 1.0, at_once=2, seeds_per_trial=3)
    assert c.trials == 8 and c.trial_s == pytest.approx(606) and c.wall_s == pytest.approx(4 * 606)
    lines = cost.describe(c, throughput, "here")
    assert lines[0].startswith("cost estimate: 8 trials (3 seeds each) of ~10.1 min each")
    assert "1,000 training inputs/s per seed" in lines[2]


def test_a_stack_is_measured_as_a_stack():
    config = {**TrialConfig(channels=16, val_count=200).flat()}
    t = cost.measure(config, "cpu", 1, seconds=0.3, seeds_per_trial=2)
    assert t.inputs_per_s > 0 and t.how.startswith("the first setting as a stack of 2 seeds for")


def test_a_dry_run_whose_trial_fits_no_node_says_so_as_the_sweep_would(capsys):
    assert run.main(["attn_act", "--dry-run", "--local-gpus", "0", "--gpus-per-trial", "0.25"]) == 2
    assert "error: no node can run a trial asking CPU 1, GPU 0.25" in capsys.readouterr().err
