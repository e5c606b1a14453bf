"""Every trial of a search space as parallel processes on one machine, without Ray.

For a machine where Ray is not installed (the lent GPU machine that made the README's
reproduction check): the same ``train.Trial`` and the same Parquet rows, written with
``tune_selcopy.logs.write_row`` exactly as the Ray trainable writes them (``node_id`` is
``no-ray``), so ``python -m tune_selcopy.analyze`` reads them like a sweep's. No retries,
no resume, no checkpoints: use ``python -m tune_selcopy.run`` for real sweeps.

Usage: ``python scripts/trials_without_ray.py SPACE --storage DIR --name NAME
[--device cuda] [--procs N] [--threads N] [--max-inputs N] [--val-count N]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_selcopy import logs  # noqa: E402
from tune_selcopy.spaces import load_space  # noqa: E402
from tune_selcopy.train import Trial, TrialConfig  # noqa: E402


def run_trial(job: tuple[str, str, dict[str, Any], dict[str, Any], str, int]) -> tuple[str, float, float]:
    """Train one trial and log every validation; return (trial id, last sample error, seconds)."""
    logs_at, trial_id, values, identity, device, threads = job
    start = time.perf_counter()
    trial = Trial(TrialConfig.from_dict(values), device=device, threads=threads)
    row: dict[str, Any] = {}
    for row in trial.validations():
        logs.write_row(logs_at, trial_id, {**identity, **row})
    return trial_id, row["validation_sample_error%"], time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("space")
    p.add_argument("--storage", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--procs", type=int, default=2, help="trials at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    p.add_argument("--max-inputs", type=int)
    p.add_argument("--val-count", type=int)
    args = p.parse_args()
    space = load_space(args.space)
    overrides = {k: v for k, v in (("max_inputs", args.max_inputs), ("val_count", args.val_count)) if v}
    logs_at = logs.logs_uri(args.storage, args.name)
    jobs = []
    for i, values in enumerate(space.trials(overrides=overrides)):
        config = TrialConfig.from_dict(values)
        identity = {"experiment": args.name, "space": space.name, "setting": space.setting_label(values),
                    "varied_keys": ",".join(space.grid), "node_id": "no-ray", **config.flat()}
        jobs.append((logs_at, f"{args.name}_{i:05d}", values, identity, args.device, args.threads))
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        for trial_id, error, seconds in pool.imap_unordered(run_trial, jobs):
            print(f"{trial_id}: validation_sample_error% {error:.4f} after {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
