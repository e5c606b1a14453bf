"""Run a search space as a Ray Tune sweep: ``python -m tune_selcopy.run SPACE``.

Joins a Ray cluster when one is given (``--address``, ``RAY_ADDRESS``, or inside ``ray job
submit``), else starts an embedded local Ray bound to loopback. Each trial writes Parquet
rows under ``<storage>/<name>/logs``; at the end the grouped table is printed and a plot of
the error curves is written next to the logs.

Everything that can be checked without Ray is checked before Ray starts (arguments,
space, wiring, storage, cluster address); a sweep's folder is claimed exclusively before
anything is written to it. Exit codes: 0 all trials finished, 1 some trials errored,
2 bad input or unusable storage/cluster (one ``error: ...`` line), 130 interrupted.
"""

from __future__ import annotations

import math
import os
import posixpath
import shlex
import sys
import textwrap
import time
from dataclasses import replace
from typing import Any

from tune_selcopy import trial_logs, uris
from tune_selcopy.errors import ArgumentParser, UserError, help_parser, last_line, one_line
from tune_selcopy.science.model import ConvTextModel
from tune_selcopy.science.trial import DEFAULT_TF32, TF32_MODES, TrialConfig
from tune_selcopy.sweeps import storage, trackers
from tune_selcopy.sweeps.cluster import (
    check_address,
    check_dashboard,
    check_feasible,
    cluster_address,
    connect,
    embedded_node,
    require_fit,
    trial_resources,
)
from tune_selcopy.sweeps.folder import (
    SWEEP_NAME,
    SweepSettings,
    check_experiment_state,
    claim_new_sweep,
    experiment_uri,
    latest_sweep,
    load_settings,
    release_sweep,
    save_settings,
    trial_overrides,
)
from tune_selcopy.sweeps.space_sources import available_spaces, load_space, space_name_of
from tune_selcopy.sweeps.spaces import ResolvedSpace, parse_sets

DEFAULT_STORAGE = "results"
WIDTH = 100  # what the command prints fits this many columns
MAX_FAILURES = 3
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


# --- Dry run ----------------------------------------------------------------------------


def setting_params(config: dict[str, Any]) -> int:
    """Model parameter count of one setting."""
    return ConvTextModel(TrialConfig.from_dict(config).model_config()).num_params()


def dry_run(space: ResolvedSpace) -> str:
    """What the resolution dropped or ignored, one line per setting with its model
    parameter count, then the totals."""
    configs, seeds = space.settings, space.seeds
    lines = [f"space {space.name}: {space.description}", *map(note_line, space.notes)]
    for config in configs:
        lines.append(f"  {space.setting_label(config):<45} model params {setting_params(config):>9,}  x {seeds} seeds")
    max_inputs = configs[0]["max_inputs"]
    lines.append(
        f"{len(configs)} settings, {len(configs) * seeds} trials, {max_inputs:,} inputs each "
        f"({len(configs) * seeds * max_inputs:,} in all)"
    )
    return "\n".join(lines)


def note_line(note: str) -> str:
    """``note: ...`` wrapped to the terminal width the reports keep (``WIDTH``)."""
    return textwrap.fill(f"note: {note}", WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def cost_lines(
    space: ResolvedSpace, args: Any, resumed: SweepSettings | None, node: dict[str, float] | None
) -> list[str]:
    """The dry run's estimate of what the sweep costs with the resources it would ask for,
    from a few seconds of training its first setting here (``sweeps.cost``); ``node`` is
    the embedded Ray's resources (None when joining a cluster)."""
    import torch

    from tune_selcopy.sweeps import cost

    if resumed is not None:
        cpus, gpus, limit = resumed.cpus_per_trial, resumed.gpus_per_trial, resumed.max_concurrent
        stack = resumed.seeds_per_trial
    else:
        has_gpu = bool(node and node["GPU"] > 0)
        (cpus, gpus), limit = trial_resources(args.cpus_per_trial, args.gpus_per_trial, has_gpu), args.max_concurrent
        stack = args.seeds_per_trial or 1
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    trials = len(space.settings) * math.ceil(space.seeds / stack)
    if node:
        require_fit(cpus, gpus, [node])  # what the sweep itself would say, before measuring
        slots = math.floor(node["CPU"] / cpus) if cpus else trials
        if gpus:
            slots = min(slots, math.floor(node["GPU"] / gpus))
        at_once = max(1, min(slots, limit or slots, trials))
        gpu_text = (f", {node['GPU']:g} GPUs", f" and {gpus:g} GPU") if gpus else ("", "")
        where = f"this machine: {node['CPU']:g} CPUs{gpu_text[0]}; {cpus:g} CPU{gpu_text[1]} per trial"
    else:
        at_once = min(limit, trials) if limit else None
        where = "--max-concurrent" if limit else "the cluster's size decides; this machine measured alone"
    # Trials side by side on this machine slow each other down: measure as many at once.
    side_by_side = at_once if node else 1
    throughput = cost.measure({**space.settings[0], "seed": 1}, device, max(1, int(cpus)), side_by_side=side_by_side,
                              seeds_per_trial=min(stack, space.seeds))
    resource, per_trial = ("GPU", gpus) if device == "cuda" else ("CPU", cpus)
    estimate = cost.estimate(space.settings, space.seeds, throughput, resource, per_trial, at_once, stack)
    lines = cost.describe(estimate, throughput, where)
    if resumed is not None:
        lines.append("  (for the whole sweep: --resume runs only what is unfinished)")
    return lines


# --- Checks before Ray starts -----------------------------------------------------------


def check_args(args: Any) -> None:
    """Bounds and combinations of the command-line values that need no cluster."""
    checks = [
        (args.trials is None or args.trials >= 1, f"--trials must be >= 1 (got {args.trials})"),
        (args.cpus_per_trial is None or args.cpus_per_trial > 0,
         f"--cpus-per-trial must be > 0 (got {args.cpus_per_trial})"),
        (args.gpus_per_trial is None or args.gpus_per_trial >= 0,
         f"--gpus-per-trial must be >= 0 (got {args.gpus_per_trial})"),
        (args.gpus_per_trial is None or args.gpus_per_trial <= 1,
         f"--gpus-per-trial {args.gpus_per_trial or 0:g}: a trial trains on one GPU, so its share is at most 1"),
        (args.max_concurrent is None or args.max_concurrent >= 1,
         f"--max-concurrent must be >= 1 (got {args.max_concurrent})"),
        (args.seeds_per_trial is None or args.seeds_per_trial >= 1,
         f"--seeds-per-trial must be >= 1 (got {args.seeds_per_trial})"),
        (args.local_cpus is None or args.local_cpus >= 1, f"--local-cpus must be >= 1 (got {args.local_cpus})"),
        (args.local_gpus is None or args.local_gpus >= 0, f"--local-gpus must be >= 0 (got {args.local_gpus})"),
        (args.wait_for_nodes >= 0, f"--wait-for-nodes must be >= 0 (got {args.wait_for_nodes})"),
        (args.name is None or SWEEP_NAME.fullmatch(args.name) is not None,
         f"--name {args.name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
         "(a sweep is one folder directly under --storage)"),
        (not (cluster_address(args.address) and (args.local_cpus is not None or args.local_gpus is not None)),
         "--local-cpus/--local-gpus declare an embedded Ray; they do not apply with --address or RAY_ADDRESS"),
    ]
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise UserError("; ".join(problems))


def sweep_bytes(configs: list[dict[str, Any]], seeds: int) -> int:
    """Storage a sweep needs at most, from its settings: per trial one checkpoint per
    validation (all are kept: weights and AdamW's two moments, float32) and one Parquet
    row per validation; Ray's own per-trial files are small."""
    per_setting = [
        TrialConfig.from_dict(config).num_validations * (12 * setting_params(config) + 2**16 + 2**14) + 2**17
        for config in configs
    ]
    return seeds * sum(per_setting) + 2**20


# --- The sweep --------------------------------------------------------------------------


def _resume_hint(settings: SweepSettings) -> str:
    """The command that continues this sweep (its saved settings say the rest), ready to
    paste: a URI's query (``?a=1&b=2``) is quoted for the shell."""
    return f"{PROG} --resume --name {settings.name} --storage {shlex.quote(settings.storage)}"


def make_tuner(space: ResolvedSpace, settings: SweepSettings, resume: bool) -> Any:
    """The Tuner of a new sweep, or of the one to resume."""
    from ray import tune

    from tune_selcopy.sweeps.progress import SweepProgress
    from tune_selcopy.sweeps.trainable import KeepIntactState, RunInfo, TrialFailures, seed_stacks, train_trial

    run = RunInfo(
        experiment=settings.name,
        space=space.name,
        varied_keys=",".join(space.columns),
        logs=trial_logs.logs_uri(settings.storage, settings.name),
        cpus_per_trial=settings.cpus_per_trial,
        gpus_per_trial=settings.gpus_per_trial,
        logical_gpus=settings.logical_gpus,
        tf32=settings.tf32,
    )
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, run=run),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    fs, storage_path = uris.resolve(settings.storage)
    experiment_path = posixpath.join(storage_path, settings.name)
    # Ray's newer console output ignores custom reporters such as SweepProgress.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Ten checkpoints per trial are few; Ray's warning about frequent snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Trial failures are reported in one line each by TrialFailures, not as tracebacks
    # (by Tune as they happen, by Ray for failures left unread when a sweep is stopped).
    os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0"
    os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
    if resume:
        try:
            return tune.Tuner.restore(
                experiment_path,
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=True,
                storage_filesystem=fs,
            )
        except Exception as exc:  # noqa: BLE001 - Ray's state is unreadable: say so, in one line
            raise UserError(
                f"cannot resume {experiment_uri(settings)}: Ray's experiment state there is damaged "
                f"({one_line(exc, 200)}); the Parquet logs in {trial_logs.logs_uri(settings.storage, settings.name)} "
                "are intact"
            ) from None
    trials = space.trials()
    for trial in trials:
        trial["setting"] = space.setting_label(trial)
    trials = seed_stacks(trials, settings.seeds_per_trial)
    reporter = SweepProgress(space.columns)
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=settings.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=storage_path,
            storage_filesystem=fs,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            # Every checkpoint is kept: a resume from the intact copy of a damaged experiment
            # state (folder.INTACT_STATE) restores the checkpoints that copy names, which may
            # be older than the newest; Tune fails a trial whose named checkpoint is gone.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            progress_reporter=reporter,
            callbacks=[
                TrialFailures(),
                KeepIntactState(),
                *trackers.callbacks(settings.log_to, space.name, settings.name),
            ],
            verbose=1,
        ),
    )


def _finished(result: Any) -> bool:
    """Ray marks interrupted trials TERMINATED too: a trial is finished when its last
    validation was reported. A trial that never started has neither config nor metrics."""
    if result.error or not result.metrics or not result.config or result.metrics.get("diverged"):
        return False
    return result.metrics.get("validation_index") == result.config["trial"]["num_validations"]


def diverged_line(result: Any) -> str | None:
    """One line for a trial with seeds whose loss turned NaN or infinite (a stack's other
    seeds trained on), or None. Its rows say so (``diverged``); it is not retried."""
    metrics = result.metrics or {}
    seeds = metrics.get("diverged_seeds") or []
    if not seeds:
        return None
    where = f"at validation {metrics.get('validation_index')}, {metrics.get('num_inputs', 0):,} inputs"
    label = (result.config or {}).get("trial", {}).get("setting", "")
    whole = "the trial stopped" if metrics.get("diverged") else "its other seeds trained on"
    return (f"  diverged: {result.path.rsplit('/', 1)[-1]} ({label}, seed {', '.join(map(str, seeds))}): the loss "
            f"turned NaN or infinite {where}; {whole}")


def run_sweep(tuner: Any, space: ResolvedSpace, settings: SweepSettings) -> int:
    """Run the sweep to its end (or interruption), print the table; return the exit code."""
    started = time.monotonic()
    try:
        results = tuner.fit()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a trial's or Ray's own write to storage failed, or a GPU
        from tune_selcopy.sweeps.trainable import TrialFailures

        cause = storage.fatal_cause(exc, ends=TrialFailures.ENDS_SWEEP)
        if cause is None:
            raise
        if isinstance(cause, UserError):
            raise cause from None
        raise storage.StorageError(f"storage {settings.storage} failed: {one_line(cause, 300)}") from None
    wall = time.monotonic() - started
    finished = sum(_finished(result) for result in results)
    diverged = sum(bool((result.metrics or {}).get("diverged")) for result in results if not result.error)
    unfinished = len(results) - finished - diverged - results.num_errors
    print(
        f"\nsweep {settings.name}: {len(results)} trials, {finished} finished, "
        f"{results.num_errors} errored, {diverged} diverged, {unfinished} unfinished, wall {wall / 60:.1f} min"
    )
    for result in results:
        if result.error:
            print(f"  errored: {result.path}: {last_line(result.error)}")
        elif line := diverged_line(result):
            print(line)
    print_report(settings, trial_logs.logs_uri(settings.storage, settings.name))
    if unfinished:
        print(f"interrupted: {unfinished} trials unfinished; continue with: {_resume_hint(settings)}",
              file=sys.stderr)
        return INTERRUPTED
    return 1 if results.num_errors or diverged else 0


def print_report(settings: SweepSettings, logs_at: str) -> None:
    """The grouped table, the plot and where the logs are; a line instead when there is
    nothing to show yet (an early Ctrl-C) or the plot cannot be written. The curves and
    the intervals go into the experiment folder (local or remote)."""
    from tune_selcopy.analysis.plots import save_plots
    from tune_selcopy.analysis.report import read_results, render

    try:
        results = read_results(logs_at)  # once: on an object store every read is many requests
        print(render(results, None, "markdown"))
        print(f"plot: {' and '.join(save_plots(results, uris.join(experiment_uri(settings), 'curves.png')))}")
    except (UserError, OSError) as exc:
        print(f"(no table: {one_line(exc, 300)})")
    print(f"logs: {logs_at}  (pandas.read_parquet reads the folder)")


def finite(text: str) -> float:
    """argparse type: a float that is neither inf nor nan."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


PROG = "python -m tune_selcopy.run"
DESCRIPTION = """\
Run a search space as a Ray Tune sweep: every setting of SPACE, each with its seeds, one
trial per seed. Without SPACE (and without --resume) it lists the spaces.

It joins the Ray cluster at --address (or RAY_ADDRESS, as inside `ray job submit`), else
starts an embedded Ray on this machine that listens on loopback only. Before Ray starts it
checks the arguments, the space, that every varied key reaches the model (two training
steps per key), the storage and the cluster. Each trial writes one Parquet row per
validation under STORAGE/NAME/logs and checkpoints at every validation; at the end the
analysis is printed and the error curves are plotted to STORAGE/NAME/curves.png.
Everything about sweeps: docs/sweeps.md."""
EPILOG = """\
examples:
  {prog} attn_invent --dry-run
      the 160 trials of the published attn_invent sweep, their parameter counts, and
      what the sweep would cost on this machine; trains nothing
  {prog} attn_act --trials 2 --max-inputs 20000 --val-count 1000
      a quick look: 2 seeds of the 2 settings, each 20,000 inputs (too short to learn)
  {prog} attn_act --resume
      continue the latest attn_act sweep in ./results where it stopped
  {prog} search_spaces/attn_invent_small.yaml --storage s3://BUCKET/results
      a space file of your own, its sweep stored in a bucket

exit codes:
  0    every trial finished
  1    some trials failed (the others' results are printed)
  2    bad input, or storage or cluster unusable: one "error: ..." line on stderr
  130  interrupted (Ctrl-C); the --resume command that continues is printed"""


def build_parser(prog: str = PROG) -> ArgumentParser:
    p = help_parser(prog, DESCRIPTION, EPILOG.format(prog=prog))
    p.add_argument("space", nargs="?", metavar="SPACE",
                   help=f"search space: {', '.join(available_spaces())}, or a .yaml space file (ours or an "
                   "experiment file of the reference tool); not needed with --resume --name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="replace a fixed trial-config value, repeatable: --set channels=32 --set dilation=1,2,3 "
                   "(default: the space's values)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the settings, their parameter counts and an estimate of the sweep's cost (measured "
                   "with a few seconds of training here); train nothing")
    p.add_argument("--trials", type=int, metavar="N", help="seeds per setting (default: the space's)")
    p.add_argument("--max-inputs", type=int, metavar="N", help="training inputs per trial (default: the space's, "
                   "1,000,000 in the published spaces)")
    p.add_argument("--val-count", type=int, metavar="N", help="validation samples, the first N of the reference "
                   "10,000 (default: the space's, all 10,000 in the published spaces)")
    p.add_argument("--cpus-per-trial", type=finite, metavar="N",
                   help="CPUs (and torch threads) per trial (default: 1)")
    p.add_argument("--gpus-per-trial", type=finite, metavar="F",
                   help="GPU share per trial, e.g. 0.25 for four trials per GPU (default: 0.25 on a cluster with "
                   "GPUs, else 0)")
    p.add_argument("--max-concurrent", type=int, metavar="N",
                   help="at most N trials at once (default: as many as the resources hold)")
    p.add_argument("--seeds-per-trial", type=int, metavar="K",
                   help="train K seeds of a setting in one trial, as one stacked model (default: 1; docs/gpus.md)")
    p.add_argument("--tf32", choices=list(TF32_MODES),
                   help="TF32 on CUDA GPUs since Ampere: conv (cuDNN convolutions only), off, or all (default: "
                   f"{DEFAULT_TF32}, as PyTorch's own default)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="PATH_OR_URI",
                   help="where sweeps go: a folder, or a file://, s3:// or gs:// URI")
    p.add_argument("--name", help="the sweep's name, its folder under --storage (default: SPACE-YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep with its saved settings: --name NAME, or else the latest "
                   "sweep of SPACE in --storage")
    p.add_argument("--address", help="Ray cluster to join, host:port or ray://host:port (default: RAY_ADDRESS, "
                   "else an embedded Ray on this machine)")
    p.add_argument("--wait-for-nodes", type=finite, default=0, metavar="SECONDS",
                   help="on an autoscaling cluster, wait this long for a node that fits a trial; 0 fails at once")
    p.add_argument("--local-cpus", type=int, metavar="N",
                   help="CPUs the embedded Ray declares (default: all of this machine's)")
    p.add_argument("--local-gpus", type=finite, metavar="N",
                   help="GPUs the embedded Ray declares (default: as many as torch sees); GPUs declared this way "
                   "may be logical, as with --logical-gpus")
    p.add_argument("--logical-gpus", action="store_true",
                   help="the cluster's GPUs are declared for testing (ray start --num-gpus 1 on a CPU machine): "
                   "a trial whose share torch cannot use trains on CPU; without it such a trial stops the sweep")
    p.add_argument("--log-to", action="append", default=[], metavar="TRACKER",
                   help="also log every trial to mlflow, mlflow=URI, wandb or wandb=PROJECT, repeatable (default: "
                   "none besides the Parquet logs and Ray's TensorBoard files; docs/trackers.md)")
    p.add_argument("--dashboard", action="store_true",
                   help="start the embedded Ray with its dashboard on 127.0.0.1 and print its URL (needs ray[default])")
    return p


def space_list() -> str:
    """The spaces ``run SPACE`` takes by name, one line each, and the space files shipped."""
    lines = ["spaces:"]
    for name in available_spaces():
        space = load_space(name).resolve()
        lines.append(textwrap.fill(f"{name:<12} {len(space.settings):>3} settings x {space.seeds:>2} seeds   "
                                   f"{space.description}", WIDTH, initial_indent="  ", subsequent_indent=" " * 40))
    lines += ["or a space file, e.g. search_spaces/attn_invent_small.yaml (our format) or",
              "search_spaces/reference/attn_act.yml (the reference tool's); both formats: docs/sweeps.md"]
    return "\n".join(lines)


def new_space(args: Any) -> ResolvedSpace:
    """The space of a new sweep: SPACE resolved with --set, --max-inputs, --val-count and
    --trials; its warnings go to stderr."""
    if args.space is None:
        print(space_list())
        raise UserError("give a SPACE to run: one of the spaces above, or a .yaml space file")
    sets, flags = parse_sets(args.set), trial_overrides(args.max_inputs, args.val_count)
    if set(sets) & set(flags):
        raise UserError(f"{', '.join(sorted(set(sets) & set(flags)))} given both by --set and by its own flag")
    space = load_space(args.space).resolve({**sets, **flags}, args.trials)
    for warning in space.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return space


def resumed_sweep(args: Any, storage_uri: str) -> SweepSettings:
    """The sweep --resume continues: --name, else the latest sweep of SPACE."""
    if args.space is None and args.name is None:
        raise UserError("--resume needs a SPACE (its latest sweep) or --name NAME")
    name = args.name or latest_sweep(storage_uri, space_name_of(args.space))
    settings = load_settings(storage_uri, name)
    if args.space is not None and settings.space != space_name_of(args.space):
        raise UserError(f"sweep {name} ran space {settings.space}, not {args.space}")
    return settings


def prepare(
    args: Any,
    space: ResolvedSpace,
    storage_uri: str,
    address: str | None,
    node: dict[str, float] | None,
    resumed: SweepSettings | None,
) -> tuple[SweepSettings, bool]:
    """Everything before Ray starts: checks, the sweep's settings, and (for a new sweep)
    the claim of its folder. ``node`` is the embedded Ray's resources (None when joining
    a cluster); ``resumed`` the saved settings of the sweep to resume. Returns the
    settings and whether the folder was claimed."""
    if address:
        check_address(address)
    if resumed is not None:
        check_same_options(args, resumed, space)
        if node:
            require_fit(resumed.cpus_per_trial, resumed.gpus_per_trial, [node])
        if logical_gpus(args, node) and not resumed.logical_gpus:  # kept for later resumes too
            resumed = replace(resumed, logical_gpus=True)
            save_settings(resumed)
        if note := check_experiment_state(resumed):
            print(note, flush=True)
        return resumed, False
    from tune_selcopy.sweeps.wiring import check_wiring

    storage.check_writable(storage_uri)
    configs, seeds = space.settings, space.seeds
    # An embedded Ray's resources are known now; a joined cluster's once connected.
    cpus, gpus = (args.cpus_per_trial or 0.0, args.gpus_per_trial or 0.0)
    if node:
        cpus, gpus = trial_resources(args.cpus_per_trial, args.gpus_per_trial, node["GPU"] > 0)
        require_fit(cpus, gpus, [node])
    storage.check_room(storage_uri, sweep_bytes(configs, seeds), f"{len(configs) * seeds} trials")
    settings = claim_new_sweep(
        SweepSettings(
            space=space.name,
            name=args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage=storage_uri,
            trials=args.trials,
            max_inputs=args.max_inputs,
            val_count=args.val_count,
            cpus_per_trial=cpus,
            gpus_per_trial=gpus,
            max_concurrent=args.max_concurrent,
            resolved_space=space.to_data(),
            log_to=trackers.parse(args.log_to),
            logical_gpus=logical_gpus(args, node),
            seeds_per_trial=args.seeds_per_trial or 1,
            tf32=args.tf32 or DEFAULT_TF32,
        ),
        numbered=args.name is None,
    )
    try:
        check_wiring(configs, space.varied_keys)
    except BaseException:
        release_sweep(settings)
        raise
    return settings, True


def logical_gpus(args: Any, node: dict[str, float] | None) -> bool:
    """Whether the user declared the GPUs for testing: ``--logical-gpus``, or the embedded
    Ray's ``--local-gpus`` (a count the user chose, not the machine's)."""
    return args.logical_gpus or (node is not None and args.local_gpus is not None)


def check_same_options(args: Any, settings: SweepSettings, space: ResolvedSpace) -> None:
    """``--resume`` runs the sweep that started: an option given again must say the same
    (a ``--set`` value: the one every saved setting has)."""
    given = {
        "--trials": (args.trials, settings.trials),
        "--max-inputs": (args.max_inputs, settings.max_inputs),
        "--val-count": (args.val_count, settings.val_count),
        "--cpus-per-trial": (args.cpus_per_trial, settings.cpus_per_trial),
        "--gpus-per-trial": (args.gpus_per_trial, settings.gpus_per_trial),
        "--max-concurrent": (args.max_concurrent, settings.max_concurrent),
        "--seeds-per-trial": (args.seeds_per_trial, settings.seeds_per_trial),
        "--tf32": (args.tf32, settings.tf32),
    }
    differ = [f"{option} {new} (the sweep has {old})" for option, (new, old) in given.items()
              if new is not None and new != old]
    if args.log_to and trackers.parse(args.log_to) != settings.log_to:
        differ.append(f"--log-to {' '.join(args.log_to)} (the sweep has {' '.join(settings.log_to) or 'none'})")
    for key, value in parse_sets(args.set).items():
        saved = sorted({str(setting[key]) for setting in space.settings})
        if saved != [str(value)]:
            differ.append(f"--set {key}={value} (the sweep has {', '.join(saved)})")
    if differ:
        raise UserError(
            f"--resume continues sweep {settings.name} with its saved settings, which these options contradict: "
            f"{', '.join(differ)}; drop them, or start a new sweep under another --name"
        )


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    settings, claimed, launched = None, False, False
    try:
        args = build_parser(prog).parse_args(argv)
        check_args(args)
        log_to = trackers.parse(args.log_to)
        storage_uri = args.storage if "://" in args.storage else os.path.abspath(args.storage)
        resumed = None
        if args.resume:
            storage.check_writable(storage_uri)  # before listing it: an unreachable store hangs
            resumed = resumed_sweep(args, storage_uri)
        space = resumed.resolve_space() if resumed else new_space(args)
        address = cluster_address(args.address)
        node = None if address else embedded_node(args.local_cpus, args.local_gpus)
        if args.dry_run:
            print(dry_run(space))
            print("\n".join(cost_lines(space, args, resumed, node)))
            return 0
        if not args.resume:
            print("".join(f"{note_line(note)}\n" for note in space.notes), end="")
        if args.dashboard:
            check_dashboard(address)
        for line in trackers.check(resumed.log_to if resumed else log_to):
            print(line, flush=True)
        settings, claimed = prepare(args, space, storage_uri, address, node, resumed)
        print(connect(address, node, args.dashboard), flush=True)
        if claimed and address:
            import ray

            has_gpu = ray.cluster_resources().get("GPU", 0) > 0
            if args.gpus_per_trial is None and args.wait_for_nodes > 0 and not has_gpu:
                # An autoscaling cluster that starts without GPU workers: the default would
                # make CPU trials, which then run on the head.
                raise UserError(
                    "the cluster has no GPU yet, so the default --gpus-per-trial cannot be read from it: pass "
                    "--gpus-per-trial (0.25 for four trials per GPU, 0 for CPU-only trials)"
                )
            cpus, gpus = trial_resources(args.cpus_per_trial, args.gpus_per_trial, has_gpu)
            settings = replace(settings, cpus_per_trial=cpus, gpus_per_trial=gpus)
            save_settings(settings)
        check_feasible(settings.cpus_per_trial, settings.gpus_per_trial, args.wait_for_nodes)
        logical = " (declared for testing: trains on CPU where torch has no GPU)" if settings.logical_gpus else ""
        print(
            f"sweep {settings.name}: space {space.name}, {settings.cpus_per_trial:g} CPU and "
            f"{settings.gpus_per_trial:g} GPU{logical} per trial, storage {settings.storage}",
            flush=True,
        )
        tuner = make_tuner(space, settings, args.resume)
        launched = True
        return run_sweep(tuner, space, settings)
    except UserError as exc:
        if claimed and not launched:
            release_sweep(settings)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        if launched:
            print(f"what was written is kept; continue with: {_resume_hint(settings)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if claimed and not launched:
            release_sweep(settings)
        hint = f"; continue with: {_resume_hint(settings)}" if launched else " before the sweep started"
        print(f"interrupted{hint}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
