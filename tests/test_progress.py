"""The progress table a sweep prints while it runs: counts first, the trials that matter,
100 columns at most."""

from __future__ import annotations

from types import SimpleNamespace

from tune_selcopy.sweeps.progress import progress_table

COLUMNS = ["attn", "qkv", "attnact"]


def trial(i: int, status: str, inputs: int | None = None, seeds=None) -> SimpleNamespace:
    config = {"trial": {"attn": "0,0,T", "qkv": "QKV", "attnact": "elu+1", "seed": 10, "setting": "x",
                        **({"seeds": seeds} if seeds else {})}}
    result = {} if inputs is None else {"num_inputs": inputs, "validation_sample_error%": 12.3456,
                                        "validation_loss": 0.00123456, "throughput": 12345.6}
    return SimpleNamespace(trial_id=f"a80a9_{i:05d}", status=status, config=config, last_result=result)


def test_counts_then_running_failed_and_finished_trials_in_100_columns():
    trials = ([trial(i, "TERMINATED", 1_000_000) for i in range(30)] + [trial(30, "RUNNING", 400_000)]
              + [trial(31, "ERROR", 100_000)] + [trial(32 + i, "PENDING") for i in range(3)])
    text = progress_table(trials, COLUMNS, max_rows=5)
    lines = text.splitlines()
    assert lines[0] == "progress: 30 of 35 trials done, 1 running, 3 pending, 1 failed"
    assert max(map(len, lines)) <= 100
    assert lines[3].split()[:6] == ["a80a9_00030", "0,0,T", "QKV", "elu+1", "10", "running"]
    assert lines[4].split()[5] == "error"
    assert "400,000" in lines[3] and "12.3" in lines[3] and "0.00123" in lines[3] and "12,346" in lines[3]
    assert lines[-1] == "... and 27 more"


def test_a_stack_shows_its_seeds_and_a_trial_without_results_its_status():
    text = progress_table([trial(0, "RUNNING", seeds=[1, 2, 3]), trial(1, "RUNNING", seeds=list(range(1, 11)))],
                          COLUMNS)
    assert " 1,2,3 " in text and " 1-10 " in text
    assert progress_table([trial(0, "PENDING")], COLUMNS) == "progress: 0 of 1 trials done, 0 running, 1 pending"
