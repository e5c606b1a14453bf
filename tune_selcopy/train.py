"""``python -m tune_selcopy.train``: one trial from the command line, without Ray.

Trains ``TrialConfig`` (the published runs' settings, changed by the flags and ``--set``)
on one device, prints a progress line per validation and the last metrics row as one JSON
line; with ``--checkpoint-dir`` it saves after each validation and resumes from what it
finds.
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
from tune_selcopy.science.trial import Trial, TrialConfig
from tune_selcopy.sweeps.spaces import parse_sets


def _progress_line(config: TrialConfig, row: Mapping[str, Any]) -> str:
    return (
        f"[{row['validation_index']:>2}/{config.num_validations}] inputs {row['num_inputs']:>9,}  "
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
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-inputs", type=int, default=defaults.max_inputs)
    parser.add_argument("--val-count", type=int, default=defaults.val_count)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--checkpoint-dir", default=None, help="save after each validation; resume if present")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other trial-config value, applied after the flags above (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        config = TrialConfig.from_dict(
            {
                "attn": args.attn,
                "qkv": args.qkv,
                "attnact": args.attnact,
                "seed": args.seed,
                "max_inputs": args.max_inputs,
                "val_count": args.val_count,
                "warmup_steps": args.warmup_steps,
                **parse_sets(args.set),
            }
        )
        if args.checkpoint_dir:  # fail now, not after the first epoch has trained
            check_writable_dir(args.checkpoint_dir)
        trial = Trial(config, device=args.device, threads=args.threads)
        if args.checkpoint_dir and Trial.has_checkpoint(args.checkpoint_dir):
            trial.load(args.checkpoint_dir)
            print(f"resumed from {args.checkpoint_dir} after validation {trial.validation_index}", flush=True)
        settings = " ".join(f"{key}={value}" for key, value in config.flat().items())
        print(f"{settings}\nmodel params {trial.model_params:,}  device {trial.device}", flush=True)
        for row in trial.validations():
            if args.checkpoint_dir:
                try:
                    trial.save(args.checkpoint_dir)
                except OSError as exc:
                    raise UserError(f"cannot write checkpoint to {args.checkpoint_dir}: {exc}") from None
            print(_progress_line(config, row), flush=True)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = f"; the checkpoint in {args.checkpoint_dir} resumes it" if args.checkpoint_dir else ""
        print(f"interrupted{saved}", file=sys.stderr)
        return 130
    last = trial.history[-1]
    print(json.dumps({**config.flat(), **last, "train_time_s": round(last["train_time_s"], 3)}))
    return 0


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
