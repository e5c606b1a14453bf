"""``python -m tune_selcopy.train``: one trial from the command line, without Ray.

Trains ``TrialConfig`` (the spec's defaults, changed by the flags and ``--set``) on one
device, prints a progress line per validation and seed, and at the end each seed's last
metrics row as one JSON line; ``--seed 1,2,3`` trains the seeds as one stacked model. With
``--checkpoint-dir`` it saves after each validation and resumes from what it finds. A seed
whose loss diverged prints an ``error:`` line instead of its JSON line (exit 2).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tune_selcopy.errors import ArgumentParser, UserError, one_line
from tune_selcopy.science.model import format_attention
from tune_selcopy.science.trial import DEFAULT_TF32, TF32_MODES, Trial, TrialConfig, parse_seeds
from tune_selcopy.sweeps.spaces import parse_sets


def _progress_line(config: TrialConfig, row: Mapping[str, Any], stacked: bool) -> str:
    seed = f"seed {row['seed']}  " if stacked else ""
    return (
        f"[{row['validation_index']:>2}/{config.num_validations}] {seed}inputs {row['num_inputs']:>9,}  "
        f"train loss {row['train_loss']:.4f} sample err {row['train_sample_error%']:6.2f}%  "
        f"val loss {row['validation_loss']:.5f} mask err {row['validation_mask_error%']:6.3f}% "
        f"sample err {row['validation_sample_error%']:6.3f}%  {row['throughput']:,.0f} inputs/s"
    )


def build_parser() -> ArgumentParser:
    defaults = TrialConfig()
    parser = ArgumentParser(prog="python -m tune_selcopy.train", description="Train one trial.")
    parser.add_argument("--attn", default=format_attention(defaults.attn), help="per layer: 0, T or heads")
    parser.add_argument("--qkv", default=defaults.qkv, help="QK, QV, KV or QKV")
    parser.add_argument("--attnact", default=defaults.attnact, help="elu+1 or dpfp")
    parser.add_argument("--seed", default=str(defaults.seed),
                        help="a seed, or several (1,2,3) trained side by side as one stacked model")
    parser.add_argument("--max-inputs", type=int, default=defaults.max_inputs)
    parser.add_argument("--val-count", type=int, default=defaults.val_count)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tf32", default=DEFAULT_TF32, choices=list(TF32_MODES),
                        help="TF32 on CUDA GPUs since Ampere: conv = cuDNN convolutions only (PyTorch's default), "
                        "off, or all (matmuls too)")
    parser.add_argument("--checkpoint-dir", default=None, help="save after each validation; resume if present")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other trial-config value, applied after the flags above (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        seeds = parse_seeds(args.seed)
        config = TrialConfig.from_dict(
            {
                "attn": args.attn,
                "qkv": args.qkv,
                "attnact": args.attnact,
                "seed": seeds[0],
                "max_inputs": args.max_inputs,
                "val_count": args.val_count,
                "warmup_steps": args.warmup_steps,
                **parse_sets(args.set),
            }
        )
        if args.checkpoint_dir:  # fail now, not after the first epoch has trained
            check_writable_dir(args.checkpoint_dir)
        trial = Trial(config, device=args.device, threads=args.threads, seeds=seeds, tf32=args.tf32)
        if args.checkpoint_dir and Trial.has_checkpoint(args.checkpoint_dir):
            trial.load(args.checkpoint_dir)
            print(f"resumed from {args.checkpoint_dir} after validation {trial.validation_index}", flush=True)
        settings = " ".join(f"{key}={value}" for key, value in config.flat().items() if key != "seed")
        print(f"{settings} seed={args.seed}\nmodel params {trial.model_params:,}  device {trial.device} "
              f"({trial.environment['device_name']})", flush=True)
        for rows in trial.validations():
            if args.checkpoint_dir:
                try:
                    trial.save(args.checkpoint_dir)
                except OSError as exc:
                    raise UserError(f"cannot write checkpoint to {args.checkpoint_dir}: {exc}") from None
            for row in rows:
                print(_progress_line(config, row, len(seeds) > 1), flush=True)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = f"; the checkpoint in {args.checkpoint_dir} resumes it" if args.checkpoint_dir else ""
        print(f"interrupted{saved}", file=sys.stderr)
        return 130
    for seed_config, rows, why in zip(trial.configs, trial.history, trial.diverged):
        if why is None:
            last = rows[-1]
            print(json.dumps({**seed_config.flat(), **last, "train_time_s": round(last["train_time_s"], 3)}))
    for why in filter(None, trial.diverged):
        print(f"error: {one_line(why)}", file=sys.stderr)
    return 2 if any(trial.diverged) else 0


def check_writable_dir(directory: str | os.PathLike) -> None:
    """Create ``directory`` if needed and prove a file can be written there; else UserError."""
    path = Path(directory)
    probe = path / f".write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"checkpoint dir {directory} is not a writable folder: {exc.strerror or exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
