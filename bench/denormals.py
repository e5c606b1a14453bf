"""Subnormal floats and CPU training speed: a trial's step with and without flushing them.

    .venv/bin/python bench/denormals.py [--checkpoint DIR]... [--steps 60] [--rounds 3]

For each model (a fresh one, then each trial checkpoint given: any ``checkpoint_NNNNNN``
folder of a sweep), times ``--steps`` training steps on one thread with
``torch.set_flush_denormal(False)`` and then ``True``, alternating for ``--rounds``
rounds so that both see the same load, and prints a Markdown table of inputs/s and the
ratio. A trained model is where it shows: as it learns, intermediate values fall below
1.2e-38 into subnormal floats, which x86 CPUs process many times slower. ``Trial``
flushes them on CPU (tune_selcopy/science/trial.py); see BENCHMARKS.md for recorded figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_selcopy.science.task import stacked_batches  # noqa: E402
from tune_selcopy.science.trial import CHECKPOINT_FILE, Trial, TrialConfig  # noqa: E402


def load(checkpoint: str | None) -> Trial:
    """A one-thread Trial: fresh (default config) or continued from a checkpoint folder."""
    if checkpoint is None:
        return Trial(TrialConfig(), threads=1)
    state = torch.load(Path(checkpoint) / CHECKPOINT_FILE, weights_only=True)
    trial = Trial(TrialConfig.from_dict(state["config"]), threads=1)
    trial.load(checkpoint)
    return trial


def inputs_per_s(trial: Trial, flush: bool, steps: int, epoch: int) -> float:
    """Inputs/s over ``steps`` training steps on fresh batches, after 3 warm-up steps."""
    torch.set_flush_denormal(flush)
    bs = trial.config.batch_size
    it = stacked_batches([trial.streams[0].epoch(epoch, bs * (steps + 3))], bs)
    for _ in range(3):
        trial.train_step(*next(it))
    start = time.perf_counter()
    for _ in range(steps):
        trial.train_step(*next(it))
    return bs * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.steps} steps, 1 thread\n")
    print("| model | inputs trained | inputs/s, subnormals kept | inputs/s, flushed | flushed / kept |")
    print("|---|--:|--:|--:|--:|")
    for checkpoint in [None, *args.checkpoint]:
        trial = load(checkpoint)
        trained = trial.num_inputs
        kept, flushed = [], []
        for r in range(args.rounds):
            # each round trains on new batches; the model moves a little, alike for both
            kept.append(inputs_per_s(trial, False, args.steps, 100 + 2 * r))
            flushed.append(inputs_per_s(trial, True, args.steps, 101 + 2 * r))
        a, b = statistics.median(kept), statistics.median(flushed)
        name = "fresh (seed 1)" if checkpoint is None else f"`{checkpoint}`"
        print(f"| {name} | {trained:,} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
