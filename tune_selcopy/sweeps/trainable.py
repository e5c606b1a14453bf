"""The Ray Tune function trainable: a thin edge around ``science.trial.Trial``.

Tune concerns stay here: the device of the trial's resource share (``devices``), checkpoints,
``tune.report`` and the Parquet row of each validation. The training loop itself runs and
is tested without Ray.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune

from tune_selcopy import trial_logs
from tune_selcopy.errors import UserError, last_line, one_line
from tune_selcopy.science.trial import DEFAULT_TF32, Trial, TrialConfig
from tune_selcopy.sweeps import storage
from tune_selcopy.sweeps.devices import GpuUnusable, trial_device
from tune_selcopy.sweeps.folder import IntactStateKeeper

# Test-only fault injection: the trial process dies right after writing the Parquet row of
# this validation (before its checkpoint is registered), on its first attempt only.
CRASH_ENV = "TUNE_SELCOPY_TEST_CRASH_AFTER"


@dataclass(frozen=True)
class RunInfo:
    """What every trial of one sweep shares."""

    experiment: str
    space: str
    varied_keys: str  # the space's grid keys, comma-joined, in display order
    logs: str  # where the Parquet rows go: a local path or a URI
    cpus_per_trial: float
    gpus_per_trial: float
    logical_gpus: bool  # GPUs declared for testing: CPU where torch cannot use them (devices.trial_device)
    tf32: str = DEFAULT_TF32  # a science.trial.TF32_MODES mode


def train_trial(config: dict[str, Any], run: RunInfo) -> None:
    """Train one trial of ``config["trial"]``; report and log after every validation.

    A storage failure that a retry cannot fix (full, read-only, no permission) is raised
    as ``StorageError``, a GPU share torch cannot use as ``GpuUnusable``; ``TrialFailures``
    turns either into the end of the sweep.
    """
    device = trial_device(run.gpus_per_trial, run.logical_gpus)
    try:
        _train(config, run, device)
    except Exception as exc:
        cause = storage.fatal_cause(exc)
        if cause is not None:
            raise storage.StorageError(f"cannot write to storage: {one_line(cause, 300)}") from None
        raise


def _train(config: dict[str, Any], run: RunInfo, device: str) -> None:
    if not isinstance(config.get("trial"), dict) or "setting" not in config["trial"]:
        raise UserError(f"not a tune_selcopy trial config (keys {sorted(config)}): was the sweep state replaced?")
    values = dict(config["trial"])
    setting = values.pop("setting")
    seeds = values.pop("seeds", None)  # a seed stack (seed_stacks)
    trial_config = TrialConfig.from_dict(values)
    trial = Trial(
        trial_config,
        device=device,
        threads=max(1, int(run.cpus_per_trial)),
        seeds=seeds,
        tf32=run.tf32,
    )
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            trial.load(directory)
    ids = seed_trial_ids(tune.get_context().get_trial_id(), trial.seeds, stacked=seeds is not None)
    # Ray snapshots its experiment state every 10 s or so: a driver killed just after a
    # trial ended resumes that trial from an earlier checkpoint. Its last rows say it
    # is done, so report them instead of training it again.
    if not trial.finished:
        done = [trial_logs.read_row(run.logs, ids[k], trial_config.num_validations) for k in trial.training]
        if all(done):
            tune.report(stack_report(done))
            return
    crash_after = int(os.environ.get(CRASH_ENV, "0")) if checkpoint is None else 0
    common = {
        "experiment": run.experiment,
        "space": run.space,
        "setting": setting,
        "varied_keys": run.varied_keys,
        "node_id": ray.get_runtime_context().get_node_id(),
    }
    identities = [{**common, **seed_config.flat()} for seed_config in trial.configs]
    for rows in trial.validations():
        for row in rows:
            k = trial.seeds.index(row["seed"])
            trial_logs.write_row(run.logs, ids[k], {**identities[k], **row})
        if rows[0]["validation_index"] == crash_after:
            os._exit(1)
        with tempfile.TemporaryDirectory() as directory:
            trial.save(directory)
            tune.report(stack_report(rows), checkpoint=tune.Checkpoint.from_directory(directory))
    # A trial whose every seed diverged ends here, its rows saying so: raised, it would be
    # retried from a checkpoint that diverged again. The driver reports it (run.diverged_line).


# --- Seed stacks: several seeds of one setting in one Tune trial ---------------------------


def seed_stacks(trials: list[dict[str, Any]], per_trial: int) -> list[dict[str, Any]]:
    """The Tune trials of a sweep when each trains ``per_trial`` seeds of one setting.

    ``trials`` are the space's trial configs with their ``setting`` labels, seeds of a
    setting in a row; consecutive seeds of one setting form a stack (the last one smaller
    when the seed count does not divide), whose config is its first seed's plus
    ``seeds``. With ``per_trial`` 1 the configs are returned as they are.
    """
    if per_trial == 1:
        return trials
    stacks: list[dict[str, Any]] = []
    for trial in trials:
        if stacks and stacks[-1]["setting"] == trial["setting"] and len(stacks[-1]["seeds"]) < per_trial:
            stacks[-1]["seeds"].append(trial["seed"])
        else:
            stacks.append({**trial, "seeds": [trial["seed"]]})
    return stacks


def seed_trial_ids(tune_id: str, seeds: Sequence[int], stacked: bool) -> list[str]:
    """The trial id of each seed's rows: the Tune trial's own id for a lone seed, and
    ``<tune id>-s<seed>`` in a stack, so each seed keeps its own rows (the analysis counts
    trials by id) and a row still names the Tune trial that holds its checkpoints."""
    return [f"{tune_id}-s{seed}" for seed in seeds] if stacked else [tune_id]


def stack_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a trial reports to Tune at a validation: a lone seed's row, or a stack's
    first row with the metrics averaged over its seeds that did not diverge; with the
    diverged seeds (``diverged_seeds``) and whether all have (``diverged``)."""
    diverged = [row["seed"] for row in rows if row["diverged"]]
    if len(rows) == 1:
        return {**rows[0], "diverged_seeds": diverged}
    kept = [row for row in rows if not row["diverged"]] or rows
    report = {key: value for key, value in rows[0].items() if key != "seed"}
    report.update({key: sum(row[key] for row in kept) / len(kept) for key in trial_logs.METRIC_COLUMNS})
    return {**report, "diverged": len(diverged) == len(rows), "diverged_seeds": diverged}


class KeepIntactState(tune.Callback):
    """Driver-side: a copy of Ray's last intact experiment state in the sweep folder,
    kept up to date while the sweep runs (``folder.IntactStateKeeper``), so that a state
    file cut short by a full disk does not end the sweep."""

    INTERVAL_S = 2.0

    def __init__(self) -> None:
        self._keeper: IntactStateKeeper | None = None
        self._next = 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not trials or time.monotonic() < self._next:
            return
        if self._keeper is None:
            # From the trials, not the settings: a resumed sweep may have been moved.
            where = trials[0].storage
            self._keeper = IntactStateKeeper(where.storage_filesystem, where.experiment_fs_path)
        self._keeper.update()
        self._next = time.monotonic() + self.INTERVAL_S


class TrialFailures(tune.Callback):
    """Driver-side: one line per trial failure instead of Ray's traceback, and the end of
    the sweep on a failure a retry cannot fix: storage (by itself Ray retries each trial
    three times on a full disk, then prints a traceback) or a GPU torch cannot use."""

    @staticmethod
    def _last_error_line(trial: Any) -> str:
        # Tune writes each failure's text (ending with the exception line) into the
        # trial's error file before it calls the callbacks.
        try:
            with open(trial.error_file) as f:
                return last_line(f.read(), 1000)
        except (OSError, TypeError):
            return "unknown error (no error file)"

    ENDS_SWEEP = (storage.StorageError, GpuUnusable)  # what train_trial raises when a retry cannot help

    def _failed(self, trial: Any, what: str) -> None:
        line = self._last_error_line(trial)
        fatal = next((kind for kind in self.ENDS_SWEEP if f"{kind.__name__}: " in line), None)
        print(f"trial {trial.trial_id} failed ({'no retry can fix this' if fatal else what}): {line[:300]}", flush=True)
        if fatal:
            raise fatal(f"trial {trial.trial_id}: {line.split(': ', 1)[-1][:400]}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._failed(trial, f"failure {trial.run_metadata.num_failures}, retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._failed(trial, f"failure {trial.run_metadata.num_failures}, no retries left")
