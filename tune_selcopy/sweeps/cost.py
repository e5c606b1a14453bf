"""What a sweep will cost, estimated before it runs (``run --dry-run``): its training inputs
over a throughput measured on this machine in a few seconds, as CPU- or GPU-hours and as
wall time at the number of trials that run at once.

The measurement trains the sweep's first setting for ``PROBE_SECONDS`` exactly as a trial
does (``Trial.train_step`` on the seeded stream), as many copies side by side as the sweep
will run trials at once on this machine, and times one validation. It is an estimate:
other settings and models further into training run at other speeds.
"""

from __future__ import annotations

import math
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tune_selcopy.science.task import stacked_batches
from tune_selcopy.science.trial import Trial, TrialConfig

PROBE_SECONDS = 2.0  # of timed training steps, after WARMUP_STEPS untimed ones
WARMUP_STEPS = 2
MIN_STEPS = 5


@dataclass(frozen=True)
class Throughput:
    """How fast one trial trains here: ``inputs_per_s`` training inputs per second, and
    ``validation_s`` seconds per validation; ``how`` says how that was measured."""

    inputs_per_s: float
    validation_s: float
    how: str


@dataclass(frozen=True)
class Cost:
    """A sweep's estimated cost: ``trials`` trials of ``trial_s`` seconds each on average,
    ``resource_hours`` of the resource they hold (``resource``: CPU or GPU, ``per_trial``
    of it each), and ``wall_s`` seconds at ``at_once`` trials at once (None: unknown); each
    trial trains ``seeds_per_trial`` seeds as one stack."""

    trials: int
    trial_s: float
    resource: str
    per_trial: float
    resource_hours: float
    at_once: int | None
    wall_s: float | None
    seeds_per_trial: int = 1


def estimate(
    settings: Sequence[Mapping[str, Any]],
    seeds: int,
    throughput: Throughput,
    resource: str,
    per_trial: float,
    at_once: int | None,
    seeds_per_trial: int = 1,
) -> Cost:
    """The cost of ``seeds`` seeds of each setting (flat trial configs with ``max_inputs``
    and ``num_validations``), ``seeds_per_trial`` of them stacked in one trial: training
    inputs over the throughput (per seed of such a stack) plus the validations; trials of
    equal length run in ``ceil(trials / at_once)`` rounds."""
    per_setting = math.ceil(seeds / seeds_per_trial)
    trials = len(settings) * per_setting
    seconds = per_setting * sum(
        s["max_inputs"] / throughput.inputs_per_s + s["num_validations"] * throughput.validation_s for s in settings
    )
    trial_s = seconds / trials
    wall_s = None if at_once is None else math.ceil(trials / at_once) * trial_s
    return Cost(trials, trial_s, resource, per_trial, seconds * per_trial / 3600, at_once, wall_s, seeds_per_trial)


def describe(cost: Cost, throughput: Throughput, where: str) -> list[str]:
    """The dry run's lines about the cost; ``where`` says what decides ``at_once``."""
    wall = (
        f"wall time ~{_duration(cost.wall_s)} at {cost.at_once} trial{'s' * (cost.at_once != 1)} at once ({where})"
        if cost.wall_s is not None
        else f"wall time: these {cost.resource}-hours over the trials that run at once ({where})"
    )
    stacked = f" ({cost.seeds_per_trial} seeds each)" if cost.seeds_per_trial > 1 else ""
    return [
        f"cost estimate: {cost.trials} trials{stacked} of ~{_duration(cost.trial_s)} each, "
        f"{cost.resource_hours:,.1f} {cost.resource}-hours ({cost.per_trial:g} {cost.resource} per trial)",
        f"  {wall}",
        f"  measured here just now: {throughput.inputs_per_s:,.0f} training inputs/s per "
        f"{'seed' if cost.seeds_per_trial > 1 else 'trial'}, "
        f"{throughput.validation_s:.1f} s per validation",
        *textwrap.wrap(f"({throughput.how})", 96, initial_indent="  ", subsequent_indent="   "),
        "  an estimate: other settings and models further into training run at other speeds",
    ]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} hours"


def measure(
    config: Mapping[str, Any],
    device: str,
    threads: int,
    seconds: float | None = None,
    side_by_side: int = 1,
    seeds_per_trial: int = 1,
) -> Throughput:
    """Train ``config`` (a flat trial config) for about ``seconds`` (``PROBE_SECONDS``) as a
    trial does, a stack of ``seeds_per_trial`` seeds as a sweep would (the throughput is then
    each seed's), and time one validation. With ``side_by_side`` > 1, that many copies train at
    the same time, as the sweep's trials will (they share cores, caches and memory
    bandwidth), and the throughput is their mean. The copies are threads of this process:
    a step's work runs in torch with the interpreter lock released."""
    seconds = PROBE_SECONDS if seconds is None else seconds
    if side_by_side <= 1:
        return _probe(config, device, threads, seconds, None, seeds_per_trial)
    barrier = threading.Barrier(side_by_side)
    found: list[Throughput] = []
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            found.append(_probe(config, device, threads, seconds, barrier, seeds_per_trial))
        except threading.BrokenBarrierError:
            pass  # another copy failed: its error is the one to report
        except BaseException as exc:  # noqa: BLE001 - raised below, once every copy has stopped
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=copy, daemon=True) for _ in range(side_by_side)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    each = ", ".join(f"{f.inputs_per_s:,.0f}/s" for f in found)
    return Throughput(
        sum(f.inputs_per_s for f in found) / len(found),
        sum(f.validation_s for f in found) / len(found),
        f"{found[0].how}, {side_by_side} side by side as the sweep runs them: {each}",
    )


def _probe(
    config: Mapping[str, Any], device: str, threads: int, seconds: float, barrier: Any, seeds_per_trial: int = 1
) -> Throughput:
    """One copy of the measurement; with ``barrier``, the clock starts when every copy is
    warmed up, so that all of them are timed while the others train."""
    trial = Trial(TrialConfig.from_dict(config), device=device, threads=threads, seeds=range(1, seeds_per_trial + 1))
    cfg = trial.config

    def now() -> float:
        if trial.device.type == "cuda":
            torch.cuda.synchronize(trial.device)
        return time.perf_counter()

    steps, started, epoch = 0, 0.0, 0
    while True:  # an epoch's worth of batches at a time, until the clock says enough
        samples = [stream.epoch(epoch, 64 * cfg.batch_size) for stream in trial.streams]
        for inputs, targets, widths in stacked_batches(samples, cfg.batch_size, device=trial.device):
            trial.train_step(inputs, targets, widths, stats=False)  # as most steps of a trial
            steps += 1
            if steps == WARMUP_STEPS:
                if barrier is not None:
                    barrier.wait()
                started = now()
            elif steps >= WARMUP_STEPS + MIN_STEPS and now() - started >= seconds:
                timed = now() - started
                begin = now()
                trial.validate()
                validation_s = now() - begin
                on = "cuda" if trial.device.type == "cuda" else f"cpu with {threads} thread{'s' * (threads > 1)}"
                stack = f" as a stack of {seeds_per_trial} seeds" if seeds_per_trial > 1 else ""
                how = f"the first setting{stack} for {timed:.1f} s, {steps - WARMUP_STEPS} steps, on {on}"
                return Throughput((steps - WARMUP_STEPS) * cfg.batch_size / timed, validation_s, how)
        epoch += 1
