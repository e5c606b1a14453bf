"""Seed stacks on the CPU: samples/s of K seeds trained as one stacked model, K = 1, 3, 10.

    python bench/stacks.py [--stacks 1 3 10] [--rounds 3] [--seconds 20] [--threads 1]

Each measurement is one process training a ``Trial`` of K seeds (``bench/gpu_check.py``'s
worker: a warm-up epoch, then ``--seconds`` of training; the trial's own throughput, data
drawing included, validation excluded). Rounds alternate the K values, so that drifting
load on a busy machine hits them alike; the table shows medians and each K's total as a
ratio to K = 1 in the same run, and every round's total to show the noise. Prints
Markdown; figures in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import replace

from gpu_check import HEADS, LINEAR, Plan, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per K and round")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the measuring process")
    args = parser.parse_args(argv)
    plan = replace(Plan(), seconds=args.seconds, epoch_inputs=1_280, val_count=100)
    print(f"start: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.rounds} rounds of "
          f"{args.seconds:g} s per K, {args.threads} thread(s)", flush=True)
    print("\n| setting | K | per seed | total | total / K=1 | total in each round |\n|---|--:|--:|--:|--:|---|")
    for name, setting in (("0,0,T QK elu+1", LINEAR), ("0,0,8 QKV", HEADS)):
        totals: dict[int, list[float]] = {k: [] for k in args.stacks}
        for _ in range(args.rounds):
            for k in args.stacks:
                totals[k].append(measure("cpu", plan, 1, k, setting=setting, threads=args.threads)["total"])
        base = statistics.median(totals[args.stacks[0]])
        for k in args.stacks:
            total = statistics.median(totals[k])
            rounds = " / ".join(f"{t:,.0f}" for t in totals[k])
            print(f"| {name} | {k} | {total / k:,.0f} | {total:,.0f} | {total / base:.2f} | {rounds} |", flush=True)
    print(f"\nend: load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
