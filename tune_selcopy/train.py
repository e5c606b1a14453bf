"""``python -m tune_selcopy.train``: one trial from the command line, without Ray.

Trains ``TrialConfig`` (the published runs' settings, changed by the flags and ``--set``)
on one device, prints a progress line per validation and seed, and at the end each seed's
last metrics row as one JSON line; ``--seed 1,2,3`` trains the seeds as one stacked model.
With ``--checkpoint-dir`` it saves after each validation and resumes from what it finds. A
seed whose loss diverged prints an ``error:`` line instead of its JSON line (exit 2).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tune_selcopy.errors import ArgumentParser, UserError, help_parser, one_line
from tune_selcopy.science.model import format_attention
from tune_selcopy.science.trial import DEFAULT_TF32, TF32_MODES, Trial, TrialConfig, parse_seeds
from tune_selcopy.sweeps.spaces import parse_sets


def _progress_line(config: TrialConfig, row: Mapping[str, Any], stacked: bool) -> str:
    """One validation in under 100 columns: inputs so far, the train and validation metrics
    (three significant digits, as the analysis prints them), the throughput."""
    seed = f"seed {row['seed']} " if stacked else ""
    return (
        f"[{row['validation_index']:>2}/{config.num_validations}] {seed}{row['num_inputs']:>9,} inputs  "
        f"train loss {row['train_loss']:.3g} err {row['train_sample_error%']:.3g}%  "
        f"val loss {row['validation_loss']:.3g} mask {row['validation_mask_error%']:.3g}% "
        f"sample {row['validation_sample_error%']:.3g}%  {row['throughput']:,.0f}/s"
    )


PROG = "python -m tune_selcopy.train"
DESCRIPTION = """\
Train one trial on this machine, without Ray: the model and training of the published runs
(3 layers, 64 channels, kernel 13, dilations 3,5,1, AdamW at 5e-4 with a cosine schedule,
1,000,000 inputs, 10 validations on the reference validation set), changed by the options.
It prints one progress line per validation and, at the end, the last metrics row as one
JSON line; several seeds (--seed 1,2,3) train side by side as one stacked model, one JSON
line each. With --checkpoint-dir it saves after every validation and, started again with
the same folder, continues from there. The settings are explained in docs/science.md."""
EPILOG = """\
examples:
  {prog} --attn 0,0,T --qkv QK --attnact dpfp --seed 3 --threads 1
      one trial of the published attn_act sweep: 1,000,000 inputs on one CPU thread
  {prog} --max-inputs 20000 --val-count 1000
      a quick look at the default setting
  {prog} --attn 0,0,8 --qkv QKV --device cuda --checkpoint-dir ckpt/qkv8
      on a GPU, resumable: run the same command again after an interruption
  {prog} --set channels=32 --set dilation=1,2,3
      any other trial-config value
  {prog} --seed 1,2,3 --max-inputs 20000
      three seeds as one stacked model (one JSON line per seed)

exit codes:
  0    trained to the end
  2    bad input (one "error: ..." line on stderr)
  130  interrupted (Ctrl-C); with --checkpoint-dir the same command continues"""


def build_parser(prog: str = PROG) -> ArgumentParser:
    defaults = TrialConfig()
    parser = help_parser(prog, DESCRIPTION, EPILOG.format(prog=prog))
    parser.add_argument("--attn", default=format_attention(defaults.attn),
                        help="attention per layer, comma-separated: 0 none, T parameter-free, or a number of heads")
    parser.add_argument("--qkv", default=defaults.qkv,
                        help="what the convolution invents for attention: QK, QV, KV or QKV (the rest is the layer "
                        "input)")
    parser.add_argument("--attnact", default=defaults.attnact,
                        help="feature map of the parameter-free attention: elu+1 or dpfp")
    parser.add_argument("--seed", default=str(defaults.seed),
                        help="seeds the model's initial weights and the training stream (0..2**63-1); several "
                        "(1,2,3) train side by side as one stacked model, one JSON line each")
    parser.add_argument("--max-inputs", type=int, default=defaults.max_inputs, metavar="N",
                        help="training inputs in all; the learning rate's cosine spans them")
    parser.add_argument("--val-count", type=int, default=defaults.val_count, metavar="N",
                        help="validation samples: the first N of the reference validation set")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps, metavar="N",
                        help="steps of linear learning-rate warm-up before the cosine (the published runs had none)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's own choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tf32", default=DEFAULT_TF32, choices=list(TF32_MODES),
                        help="TF32 on CUDA GPUs since Ampere: conv = cuDNN convolutions only (PyTorch's default), "
                        "off, or all (matmuls too)")
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="save after each validation and resume from what is there (default: no checkpoints)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other trial-config value, applied after the options above, repeatable "
                        "(default: the published runs' values)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    try:
        args = build_parser(prog).parse_args(argv)
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
        print(textwrap.fill(f"{settings} seed={args.seed}", 100, break_on_hyphens=False), flush=True)
        print(f"model params {trial.model_params:,}  device {trial.device} ({trial.environment['device_name']})",
              flush=True)
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
