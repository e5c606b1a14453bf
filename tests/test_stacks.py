"""Seed stacks: K seeds of one setting trained as one vmapped model (``Trial(seeds=...)``,
``train --seed 1,2,3``, ``run --seeds-per-trial K``) compute what K separate trials
compute: the same initialisation and data bitwise, the same parameters and metrics to
float64 rounding; a diverged seed stops alone; a stack checkpoints and resumes as a whole."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tune_selcopy import run, trial_logs
from tune_selcopy.errors import UserError
from tune_selcopy.science.trial import Trial, TrialConfig
from tune_selcopy.sweeps.trainable import CRASH_ENV, seed_stacks, seed_trial_ids, stack_report

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SEEDS = (1, 2, 3)
TIMING_KEYS = {"train_time_s", "throughput"}
METRICS = [f"{split}_{name}" for split in ("train", "validation") for name in ("loss", "error%", "mask_error%",
                                                                                "sample_error%")]
# 20 steps of 16 inputs: float64 on a CPU is slow, and the step count is what the comparison needs.
TWENTY_STEPS = dict(max_inputs=320, batch_size=16, num_validations=2, val_count=50)
SETTINGS = {
    "linear elu+1": dict(attn=(0, 0, True), qkv="QK", attnact="elu+1"),
    "linear dpfp": dict(attn=(0, 0, True), qkv="QK", attnact="dpfp"),
    "8 heads QKV": dict(attn=(0, 0, 8), qkv="QKV"),
}


class Recording(Trial):
    """A trial that keeps every step's batches, as the seeds' own widths cut them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[list[tuple[torch.Tensor, torch.Tensor]]] = []

    def train_step(self, inputs, targets, widths=None, stats=True):
        widths = widths or [inputs.shape[2]] * inputs.shape[0]
        self.seen.append([(inputs[k, :, :w].clone(), targets[k, :, :w].clone()) for k, w in enumerate(widths)])
        super().train_step(inputs, targets, widths, stats)


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING_KEYS}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def stack_and_singles(config: TrialConfig, dtype: torch.dtype, seeds=SEEDS) -> tuple[Recording, list[Recording]]:
    stack = Recording(config, threads=1, seeds=seeds, dtype=dtype)
    stack.run()
    singles = []
    for seed in seeds:
        single = Recording(config, threads=1, seeds=(seed,), dtype=dtype)
        single.run()
        singles.append(single)
    return stack, singles


def worst_differences(stack: Trial, singles: list[Trial]) -> tuple[float, float]:
    """The largest relative difference of a parameter tensor (norm-wise) and of a metric."""
    params = metrics = 0.0
    for k, single in enumerate(singles):
        for name, param in single.net.params.items():
            params = max(params, relative(stack.net.params[name][k], param))
        for mine, theirs in zip(stack.history[k], single.history[0], strict=True):
            for key in METRICS:
                metrics = max(metrics, abs(mine[key] - theirs[key]) / max(abs(theirs[key]), 1e-300))
    return params, metrics


@pytest.fixture(scope="module", params=list(SETTINGS))
def float64_runs(request):
    config = TrialConfig(**SETTINGS[request.param], **TWENTY_STEPS)
    return stack_and_singles(config, torch.float64)


def test_a_float64_stack_matches_separate_trials(float64_runs):
    """Measured (torch 2.13 CPU, 20 steps of 16 inputs, largest relative difference):
    parameters 2.4e-16 (elu+1), 7.9e-16 (dpfp), 8.4e-11 (8 heads: the key biases' true
    gradient is exactly zero, softmax ignores them, so AdamW turns their rounding noise into
    steps); metrics 2.3e-16, 2.5e-16, 1.4e-16."""
    stack, singles = float64_runs
    assert stack.step == 20 and all(single.step == 20 for single in singles)
    params, metrics = worst_differences(stack, singles)
    assert params <= 1e-7 and metrics <= 1e-7, (params, metrics)
    for k, single in enumerate(singles):
        assert [r["seed"] for r in stack.history[k]] == [SEEDS[k]] * 2
        assert {"learning_rate", "num_inputs", "step", "model_params"} <= set(stack.history[k][-1])
        for key in ("learning_rate", "num_inputs", "step", "model_params"):
            assert stack.history[k][-1][key] == single.history[0][-1][key]


def test_a_stacks_data_streams_are_bitwise_the_separate_trials(float64_runs):
    stack, singles = float64_runs
    for k, single in enumerate(singles):
        assert len(stack.seen) == len(single.seen) == 20
        for step, (mine, (theirs,)) in enumerate(zip(stack.seen, single.seen)):
            assert torch.equal(mine[k][0], theirs[0]) and torch.equal(mine[k][1], theirs[1]), (k, step)


def test_each_seed_is_initialised_and_counted_as_alone():
    for setting, params in (("linear elu+1", 229_632), ("8 heads QKV", 299_584)):
        config = TrialConfig(**SETTINGS[setting], **TWENTY_STEPS)
        stack = Trial(config, threads=1, seeds=SEEDS)
        assert stack.model_params == params  # per seed, as the published table counts
        for k, seed in enumerate(SEEDS):
            alone = Trial(config, threads=1, seeds=(seed,))
            assert set(alone.net.params) == set(stack.net.params)
            for name, param in alone.net.params.items():
                assert torch.equal(stack.net.params[name][k], param), (seed, name)
            assert sum(stack.net.params[name][k].numel() for name in stack.net.params) == params


def test_seeds_whose_batches_differ_in_width_train_apart_and_exactly():
    """Batches of 4 samples often differ in their longest program between seeds. Each
    group of seeds of one width goes through the model at that width (padding to the
    widest would change their loss and convolutions). Measured: widths differ in 13 of
    the 20 steps; parameters and metrics agree to 1.6e-16."""
    config = TrialConfig(**SETTINGS["linear elu+1"], max_inputs=80, num_validations=1, val_count=20, batch_size=4)
    stack, singles = stack_and_singles(config, torch.float64)
    split = [step for step in stack.seen if len({inputs.shape[1] for inputs, _ in step}) > 1]
    assert len(stack.seen) == 20 and len(split) >= 5
    params, metrics = worst_differences(stack, singles)
    assert params <= 1e-7 and metrics <= 1e-7, (params, metrics)


def test_a_float32_stacks_final_rows_agree_with_separate_trials():
    """float32, 100 steps (two epochs of 3,200 inputs): the final rows' losses agree to
    1e-4 relative and the error percentages to 0.5 points. Measured: losses 1.1e-7
    relative (elu+1 and 8 heads QKV), error percentages equal. Not bitwise: vmap routes
    the convolutions and matmuls through other kernels, and float32 rounding differences
    grow as training goes on, hence the margin."""
    config = TrialConfig(**SETTINGS["linear elu+1"], max_inputs=6400, num_validations=2, val_count=50)
    stack, singles = stack_and_singles(config, torch.float32, seeds=(1, 2))
    for k, single in enumerate(singles):
        mine, theirs = stack.history[k][-1], single.history[0][-1]
        for key in METRICS:
            if key.endswith("_loss"):
                assert math.isclose(mine[key], theirs[key], rel_tol=1e-4), (key, mine[key], theirs[key])
            else:
                assert abs(mine[key] - theirs[key]) <= 0.5, (key, mine[key], theirs[key])


def test_a_diverged_seed_stops_alone():
    config = TrialConfig(**SETTINGS["linear elu+1"], max_inputs=1920, num_validations=3, val_count=50)
    clean = Trial(config, threads=1, seeds=SEEDS)
    clean.run()
    stack = Trial(config, threads=1, seeds=SEEDS)
    with torch.no_grad():  # seed 2's loss is NaN from the first step
        stack.net.seed_tensor(stack.net.params["embedding.weight"], 1).fill_(float("nan"))
    stack.run()
    assert [row["diverged"] for row in stack.history[1]] == [True]  # its one row says so
    assert stack.diverged[1].startswith("training diverged: train_loss is nan after 640 inputs")
    assert stack.diverged[0] is None and stack.diverged[2] is None and stack.finished
    for k in (0, 2):  # the others never saw it: bitwise the clean stack's rows
        assert [without_timing(r) for r in stack.history[k]] == [without_timing(r) for r in clean.history[k]]
    for param in stack.net.parameters():  # stopped at zero: no NaN left in the stack
        assert not stack.net.seed_tensor(param, 1).any()
        assert torch.isfinite(param).all()
        assert not stack.net.seed_tensor(stack.optimizer.state[param]["exp_avg"], 1).any()


def test_a_stack_resumes_bit_identically(tmp_path):
    config = TrialConfig(**SETTINGS["8 heads QKV"], max_inputs=1920, num_validations=3, val_count=50)
    whole = Trial(config, threads=1, seeds=(4, 5))
    whole.run()
    first = Trial(config, threads=1, seeds=(4, 5))
    next(first.validations())
    first.save(tmp_path)
    second = Trial(config, threads=1, seeds=(4, 5))
    second.load(tmp_path)
    second.run()
    assert [[without_timing(r) for r in rows] for rows in second.history] == \
        [[without_timing(r) for r in rows] for rows in whole.history]
    for name, param in whole.net.params.items():
        assert torch.equal(second.net.params[name], param)
    other = Trial(config, threads=1, seeds=(5, 4))
    with pytest.raises(UserError, match=r"checkpoint belongs to seeds \[4, 5\], not \[5, 4\]"):
        other.load(tmp_path)


def test_bad_seed_lists_are_refused():
    with pytest.raises(UserError, match="distinct seeds"):
        Trial(TrialConfig(**TWENTY_STEPS), seeds=(1, 1))
    with pytest.raises(UserError, match="seed -1 must be in"):
        Trial(TrialConfig(**TWENTY_STEPS), seeds=(1, -1))


# --- the command line ---------------------------------------------------------------------


def test_cli_trains_a_stack_and_prints_one_json_line_per_seed():
    out = subprocess.run(
        [PY, "-m", "tune_selcopy.train", "--seed", "2,1", "--max-inputs", "1280", "--val-count", "50",
         "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["seed"] for r in results] == [2, 1]
    assert all(r["validation_index"] == 10 and r["num_inputs"] == 1280 and not r["diverged"] for r in results)
    assert len([line for line in out.stdout.splitlines() if line.startswith("[")]) == 20  # per seed and validation
    for bad, message in (("1,1", "each seed once"), ("1,x", "comma-separated integers")):
        out = subprocess.run([PY, "-m", "tune_selcopy.train", "--seed", bad], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.startswith("error:") and message in out.stderr, out.stderr


# --- sweeps: stacks as Tune trials --------------------------------------------------------


def test_seed_stacks_group_consecutive_seeds_of_a_setting():
    trials = [{"setting": s, "qkv": s, "seed": seed} for s in ("QK", "KV") for seed in (1, 2, 3)]
    assert seed_stacks(trials, 1) is trials
    stacks = seed_stacks(trials, 2)
    assert [(t["setting"], t["seed"], t["seeds"]) for t in stacks] == [
        ("QK", 1, [1, 2]), ("QK", 3, [3]), ("KV", 1, [1, 2]), ("KV", 3, [3])]
    assert [t["seeds"] for t in seed_stacks(trials, 10)] == [[1, 2, 3], [1, 2, 3]]
    assert seed_trial_ids("ab12_00003", [1, 2], stacked=True) == ["ab12_00003-s1", "ab12_00003-s2"]
    assert seed_trial_ids("ab12_00003", [7], stacked=False) == ["ab12_00003"]


def test_a_stack_reports_its_seeds_mean():
    rows = [{"validation_index": 2, "seed": s, "diverged": s == 3, **{m: float(s) for m in METRICS}}
            for s in (1, 2, 3)]
    report = stack_report(rows)
    assert report["validation_index"] == 2 and "seed" not in report
    assert all(report[m] == 1.5 for m in METRICS)  # seed 3 diverged: left out
    assert report["diverged_seeds"] == [3] and report["diverged"] is False
    assert stack_report(rows[:1]) == {**rows[0], "diverged_seeds": []}
    assert stack_report(rows[2:])["diverged_seeds"] == [3]  # a lone seed's row says diverged itself


def test_a_stacked_sweep_writes_rows_per_seed_and_survives_a_crash(tmp_path, capsys):
    """attn_act with 3 seeds in stacks of 2: 4 Tune trials, 6 seeds' rows. Each trial's
    process dies after writing validation 3's rows (before its checkpoint); the retry
    replays it from checkpoint 2 and overwrites the same rows."""
    args = ["attn_act", "--trials", "3", "--seeds-per-trial", "2", "--max-inputs", "1280", "--val-count", "64",
            "--local-cpus", "2", "--storage", str(tmp_path), "--name", "stacked"]
    out = subprocess.run([PY, "-m", "tune_selcopy.run", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, CRASH_ENV: "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    df = trial_logs.load_logs(str(tmp_path / "stacked" / "logs"))
    assert df["trial_id"].nunique() == 6 and len(df) == 60
    per_seed = df.groupby("trial_id").agg(setting=("attnact", "first"), seed=("seed", "first"),
                                          rows=("validation_index", "nunique"))
    assert (per_seed["rows"] == 10).all()
    assert sorted(per_seed.groupby("setting")["seed"].apply(sorted).tolist()) == [[1, 2, 3], [1, 2, 3]]
    assert all(trial_id.endswith(f"-s{seed}") for trial_id, seed in per_seed["seed"].items())
    assert df["trial_id"].str.rsplit("-s", n=1).str[0].nunique() == 4  # Tune trials
    assert not df["diverged"].any() and (df["device_name"].str.len() > 0).all()
    by_trial = df.sort_values("validation_index").groupby("trial_id")["timestamp"]
    assert by_trial.apply(lambda t: t.is_monotonic_increasing).all()  # row 3 replayed, once
    assert "sweep stacked: 4 trials, 4 finished" in out.stdout and "All 6 trials finished." in out.stdout
    # --resume keeps the stacks it started with
    assert run.main(["--resume", "--name", "stacked", "--storage", str(tmp_path), "--seeds-per-trial", "3"]) == 2
    assert "--seeds-per-trial 3 (the sweep has 2)" in capsys.readouterr().err


def test_a_stack_of_ten_dispatches_far_fewer_ops_than_ten_trials():
    """What makes stacks the lever on a GPU, where an eager step costs host time per op,
    not per sample: a step of 10 seeds dispatches well under twice the ops of one seed's
    step (counted at torch's dispatcher, backward and AdamW included). Measured: 0,0,T QK
    208 ops for one seed, 332 for ten; 0,0,8 QKV 321 and 552. Without the train metrics
    (steps no validation reads) one seed's step is 179 ops, the plain step's count."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from tune_selcopy.science.task import stacked_batches

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))

    def ops_per_step(seeds: int, stats: bool) -> int:
        trial = Trial(TrialConfig(**TWENTY_STEPS), threads=1, seeds=range(1, seeds + 1))
        steps = stacked_batches([s.epoch(0, 128) for s in trial.streams], 64)
        trial.train_step(*next(steps))  # AdamW makes its state on the first step
        with Count() as count:
            trial.train_step(*next(steps), stats=stats)
        return count.ops

    one, ten = ops_per_step(1, True), ops_per_step(10, True)
    assert ten < 2 * one, (one, ten)
    assert ops_per_step(1, False) <= one - 20  # the metrics skipped outside the window


def test_sweeps_saved_before_stacks_resume_with_one_seed_per_trial(tmp_path):
    from tune_selcopy.sweeps.folder import SweepSettings

    settings = SweepSettings(space="attn_act", name="x", storage=str(tmp_path), trials=None, max_inputs=None,
                             val_count=None, cpus_per_trial=1.0, gpus_per_trial=0.0, max_concurrent=None,
                             seeds_per_trial=4, tf32="all")
    assert SweepSettings.from_json(settings.to_json(), str(tmp_path), "x") == settings
    old = json.loads(settings.to_json())
    del old["seeds_per_trial"], old["tf32"]
    loaded = SweepSettings.from_json(json.dumps(old).encode(), str(tmp_path), "x")
    assert (loaded.seeds_per_trial, loaded.tf32) == (1, "conv")
    with pytest.raises(UserError, match="is not a tune_selcopy sweep file"):
        SweepSettings.from_json(json.dumps({**old, "stacks": 2}).encode(), str(tmp_path), "x")
