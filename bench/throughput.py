"""Training throughput of this package against its ceiling and a reference-style pipeline.

For each CPU thread count, measured back to back so that all three see similar load:

(a) bare step (measured before and after (b), averaged): forward + backward + AdamW step + scheduler step on ONE fixed batch of 64
    training samples, nothing else (the ceiling for this model on this machine);
(b) a full ``Trial`` of this package: seeded tensor data stream, on-device metrics for
    the steps a validation reads, validations; reports the trial's own throughput (validation excluded, as the
    package reports it) and the wall time of ``run()`` including validation;
(c) a reference-style pipeline: per-sample Python string generation (``generate_texts``,
    one sample at a time with a ``random.Random``) inside a ``DataLoader`` with 1 worker,
    per-sample encoding to tensors, a collate that pads with spaces, and per-step metric
    syncs (``.item()`` on the loss and each error metric every step); same model,
    optimizer and schedule as (b).

Usage: ``python bench/throughput.py [--threads 1 2] [--inputs 20000]``. Prints a
Markdown table; see BENCHMARKS.md for recorded results.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_selcopy.science.task import MASK_TOKEN, PAD_TOKEN, SwapStream, generate_texts, validation_texts  # noqa: E402
from tune_selcopy.science.trial import Trial, TrialConfig  # noqa: E402

BATCH = 64



def plain_step(model, optimizer, scheduler, inputs: torch.Tensor, targets: torch.Tensor):
    """Forward, backward, AdamW and scheduler step with nothing else; returns (logits, loss)."""
    logits = model(inputs)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return logits, loss

def config(inputs: int, val_count: int, num_validations: int) -> TrialConfig:
    return TrialConfig(max_inputs=inputs, val_count=val_count, num_validations=num_validations)


def bare_step(cfg: TrialConfig, threads: int) -> float:
    """(a) samples/s of the bare optimizer step on one fixed batch of 64 training samples."""
    trial = Trial(cfg, threads=threads)
    samples = SwapStream(cfg.seed + 1000).epoch(0, BATCH)
    inputs, targets = samples.tokens()
    model, optimizer, scheduler = trial.net.module, trial.optimizer, trial.scheduler
    model.train()
    steps = cfg.max_inputs // BATCH

    def step() -> None:
        plain_step(model, optimizer, scheduler, inputs, targets)

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


def full_trial(cfg: TrialConfig, threads: int) -> tuple[float, float, float]:
    """(b) the package's Trial: (its own throughput, wall seconds of run(), samples/s on wall)."""
    trial = Trial(cfg, threads=threads)
    start = time.perf_counter()
    (last,) = trial.run()
    wall = time.perf_counter() - start
    return last["throughput"], wall, cfg.max_inputs / wall


class ReferenceStream(IterableDataset):
    """Per-sample Python generation and per-sample encoding, as the reference does it."""

    def __init__(self, count: int, seed: int, exclude: frozenset[str]):
        self.count, self.seed, self.exclude = count, seed, exclude

    def __iter__(self):
        info = get_worker_info()
        rng = random.Random(self.seed + (info.id if info else 0))
        for _ in range(self.count):
            text = generate_texts(1, rng, num_operations=(1, 3), exclude=self.exclude)[0]
            raw = text.encode()
            target = torch.tensor(list(raw), dtype=torch.long)
            inputs = target.clone()
            inputs[raw.rindex(b":") + 1 :] = MASK_TOKEN
            yield inputs, target


def pad_collate(items):
    inputs, targets = zip(*items)
    return (
        pad_sequence(inputs, batch_first=True, padding_value=PAD_TOKEN),
        pad_sequence(targets, batch_first=True, padding_value=PAD_TOKEN),
    )


def reference_pipeline(cfg: TrialConfig, threads: int) -> float:
    """(c) samples/s of a DataLoader (1 worker) pipeline with per-step metric syncs."""
    trial = Trial(cfg, threads=threads)  # same model, optimizer and schedule
    model, optimizer, scheduler = trial.net.module, trial.optimizer, trial.scheduler
    model.train()
    dataset = ReferenceStream(cfg.max_inputs, cfg.seed, frozenset(validation_texts()))
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=1, collate_fn=pad_collate)
    logged = []
    count = 0
    start = time.perf_counter()  # includes the worker start, as a reference epoch would
    for inputs, targets in loader:
        logits, loss = plain_step(model, optimizer, scheduler, inputs, targets)
        with torch.no_grad():
            wrong = logits.argmax(dim=-1) != targets
            masked = inputs == MASK_TOKEN
            logged.append(
                (
                    loss.item(),
                    100.0 * wrong.float().mean().item(),
                    100.0 * (wrong & masked).sum().item() / max(masked.sum().item(), 1),
                    100.0 * wrong.any(dim=1).float().mean().item(),
                )
            )
        count += inputs.shape[0]
    elapsed = time.perf_counter() - start
    assert count == cfg.max_inputs
    return count / elapsed


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--inputs", type=int, default=20_000, help="training inputs per measurement")
    parser.add_argument("--val-count", type=int, default=1_000, help="validation samples for (b)")
    parser.add_argument("--num-validations", type=int, default=10, help="validation points for (b)")
    args = parser.parse_args(argv)
    cfg = config(args.inputs, args.val_count, args.num_validations)
    validation_texts()  # build the cached sets before any timing
    # First-use imports (optimizer) outside the timings; it also turns on flushing of
    # subnormal floats for this process, as every CPU trial does, so (a), (b) and (c)
    # compute alike (that effect alone: bench/denormals.py).
    Trial(cfg, threads=1)
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}; "
          f"{args.inputs:,} inputs per measurement, batch {BATCH}, model {cfg.model_config()}")
    print(f"start: {load_line()}", flush=True)
    rows = []
    for threads in args.threads:
        # (a) is measured before and after (b) and averaged, to cancel drifting load
        a1 = bare_step(cfg, threads)
        print(f"threads {threads}: (a) bare step {a1:,.0f} samples/s  [{load_line()}]", flush=True)
        b, wall, b_wall = full_trial(cfg, threads)
        print(f"threads {threads}: (b) trial {b:,.0f} samples/s, run() wall {wall:.1f} s "
              f"({b_wall:,.0f} samples/s incl. validation)  [{load_line()}]", flush=True)
        a2 = bare_step(cfg, threads)
        print(f"threads {threads}: (a) bare step again {a2:,.0f} samples/s  [{load_line()}]", flush=True)
        a = (a1 + a2) / 2
        c = reference_pipeline(cfg, threads)
        print(f"threads {threads}: (c) reference-style {c:,.0f} samples/s  [{load_line()}]", flush=True)
        rows.append((threads, a, b, b_wall, wall, c))
    print(f"end: {load_line()}\n")
    print("| threads | (a) bare step | (b) Trial throughput | (b) incl. validation (wall s) "
          "| (c) reference-style | b/a | b/c |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for threads, a, b, b_wall, wall, c in rows:
        print(f"| {threads} | {a:,.0f} | {b:,.0f} | {b_wall:,.0f} ({wall:.1f} s) | {c:,.0f} "
              f"| {b / a:.3f} | {b / c:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
