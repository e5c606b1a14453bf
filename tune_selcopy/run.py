"""Run a search space as a Ray Tune sweep: ``python -m tune_selcopy.run SPACE``.

Joins a Ray cluster when one is given (``--address``, ``RAY_ADDRESS``, or inside ``ray job
submit``), else starts an embedded local Ray. Each trial writes Parquet rows under
``<storage>/<name>/logs``; at the end the grouped table is printed and a plot of the error
curves is written next to the logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.fs as pafs

from tune_selcopy import logs
from tune_selcopy.errors import UserError
from tune_selcopy.model import ConvTextModel
from tune_selcopy.spaces import ResolvedSpace, available_spaces, load_space, parse_sets, space_name_of
from tune_selcopy.train import TrialConfig

RUN_FILE = "tune_selcopy.json"  # the sweep's own settings, read back by --resume
DEFAULT_STORAGE = "results"
MAX_FAILURES = 3


@dataclass(frozen=True)
class SweepSettings:
    """What defines a sweep beyond its space; saved with it so --resume rebuilds it."""

    space: str
    name: str
    storage: str
    trials: int | None
    max_inputs: int | None
    val_count: int | None
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    # The resolved space (ResolvedSpace.to_data()): --resume runs exactly this, whatever the
    # space file or the flags say by then. None in sweeps saved before space files existed.
    resolved_space: dict[str, Any] | None = None

    def resolve_space(self) -> ResolvedSpace:
        if self.resolved_space is None:
            return load_space(self.space).resolve(self.overrides(), self.trials)
        return ResolvedSpace.from_data(self.resolved_space)

    def overrides(self) -> dict[str, Any]:
        return trial_overrides(self.max_inputs, self.val_count)


def trial_overrides(max_inputs: int | None, val_count: int | None) -> dict[str, Any]:
    """The fixed trial values a sweep replaces (for smaller, quicker sweeps)."""
    return {k: v for k, v in (("max_inputs", max_inputs), ("val_count", val_count)) if v is not None}


# --- Dry run ----------------------------------------------------------------------------


def dry_run(space: ResolvedSpace) -> str:
    """What the resolution dropped or ignored, one line per setting with its model
    parameter count, then the totals."""
    configs, seeds = space.settings, space.seeds
    lines = [f"space {space.name}: {space.description}", *(f"note: {note}" for note in space.notes)]
    for config in configs:
        params = ConvTextModel(TrialConfig.from_dict(config).model_config()).num_params()
        lines.append(f"  {space.setting_label(config):<45} model params {params:>9,}  x {seeds} seeds")
    max_inputs = configs[0]["max_inputs"]
    lines.append(
        f"{len(configs)} settings, {len(configs) * seeds} trials, {max_inputs:,} inputs each "
        f"({len(configs) * seeds * max_inputs:,} in all)"
    )
    return "\n".join(lines)


# --- Cluster and resources --------------------------------------------------------------


def connect(address: str | None, local_cpus: int | None, local_gpus: float | None) -> str:
    """Join the given or ambient cluster, else start an embedded one; say which."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        if local_cpus is not None or local_gpus is not None:
            raise UserError("--local-cpus/--local-gpus declare an embedded Ray; they do not apply with --address")
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        return f"joined Ray cluster at {address}"
    import torch

    cpus = local_cpus or os.cpu_count() or 1
    gpus = torch.cuda.device_count() if local_gpus is None else local_gpus
    ray.init(
        num_cpus=cpus, num_gpus=gpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
    )
    return f"started an embedded local Ray with {cpus} CPUs and {gpus:g} GPUs"


def default_resources(cpus: float | None, gpus: float | None) -> tuple[float, float]:
    """CPU machines: one trial per core; GPU clusters: four trials per GPU, one core each."""
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    return (1.0 if cpus is None else cpus, (0.25 if has_gpu else 0.0) if gpus is None else gpus)


def _describe(resources: dict[str, float]) -> str:
    """``CPU 2, GPU 1``: the resources a trial asks for or a node has."""
    return ", ".join(f"{key} {resources.get(key, 0):g}" for key in ("CPU", "GPU"))


def _fits(node: dict[str, Any], request: dict[str, float]) -> bool:
    return node.get("Alive", False) and all(node["Resources"].get(k, 0) >= v for k, v in request.items())


def check_feasible(cpus: float, gpus: float, wait_s: float) -> None:
    """Fail fast when no node can ever hold one trial; Ray itself would wait forever.

    With ``wait_s`` (autoscaling clusters) the request is handed to the autoscaler and the
    check waits for a node that fits.
    """
    import ray
    from ray.autoscaler.sdk import request_resources

    if cpus <= 0 or gpus < 0:
        raise UserError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0 (got {cpus:g}, {gpus:g})")
    if gpus > 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-trial {gpus:g}: above 1 a GPU share must be a whole number")
    request = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    deadline = time.monotonic() + wait_s
    if wait_s > 0:
        request_resources(bundles=[request])
    try:
        while not any(_fits(node, request) for node in ray.nodes()):
            if time.monotonic() >= deadline:
                nodes = "; ".join(_describe(n["Resources"]) for n in ray.nodes() if n.get("Alive"))
                raise UserError(
                    f"no node can run a trial asking {_describe(request)}: the nodes have {nodes}; lower "
                    "--cpus-per-trial/--gpus-per-trial, or on an autoscaling cluster pass "
                    "--wait-for-nodes SECONDS"
                )
            time.sleep(2)
    finally:
        if wait_s > 0:
            request_resources(bundles=[])  # from here on Tune's own demand drives scaling


# --- Storage ----------------------------------------------------------------------------


def experiment_uri(settings: SweepSettings) -> str:
    return logs.join(settings.storage, settings.name)


def save_settings(settings: SweepSettings) -> None:
    fs, path = logs.resolve(logs.join(experiment_uri(settings), RUN_FILE))
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(asdict(settings), indent=1).encode())


def load_settings(storage: str, name: str) -> SweepSettings:
    fs, path = logs.resolve(logs.join(storage, name, RUN_FILE))
    try:
        with fs.open_input_stream(path) as stream:
            return SweepSettings(**{**json.loads(stream.read()), "storage": storage, "name": name})
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"nothing to resume: no sweep at {logs.join(storage, name)} ({exc})") from exc


def latest_sweep(storage: str, space: str) -> str:
    """The most recently started sweep of ``space`` under ``storage`` (for --resume)."""
    fs, root = logs.resolve(storage)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        candidates = [e.base_name for e in entries if e.type == pafs.FileType.Directory]
        run_files = fs.get_file_info([posixpath.join(root, name, RUN_FILE) for name in candidates])
    except OSError as exc:
        raise UserError(f"cannot list {storage}: {exc}") from exc
    started = {
        name: info.mtime_ns
        for name, info in zip(candidates, run_files)
        if info.type == pafs.FileType.File and load_settings(storage, name).space == space
    }
    if not started:
        raise UserError(f"nothing to resume: no sweep of {space} under {storage}")
    return max(started, key=started.get)


def write_plot(settings: SweepSettings, logs_at: str) -> str:
    """Plot the error curves into the experiment folder (local or remote); return where."""
    import tempfile

    from tune_selcopy.analyze import analyze, plot_curves

    target = logs.join(experiment_uri(settings), "curves.png")
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "curves.png")
        plot_curves(analyze(logs_at), local)
        fs, path = logs.resolve(target)
        with open(local, "rb") as src, fs.open_output_stream(path) as out:
            out.write(src.read())
    return target


# --- The sweep --------------------------------------------------------------------------


def run_sweep(space: ResolvedSpace, settings: SweepSettings, resume: bool, wait_s: float) -> int:
    """Launch (or resume) the sweep, print the table; return the exit code."""
    from ray import tune

    from tune_selcopy.analyze import report
    from tune_selcopy.trainable import RunInfo, train_trial

    check_feasible(settings.cpus_per_trial, settings.gpus_per_trial, wait_s)
    run = RunInfo(
        experiment=settings.name,
        space=space.name,
        varied_keys=",".join(space.columns),
        logs=logs.logs_uri(settings.storage, settings.name),
        cpus_per_trial=settings.cpus_per_trial,
        gpus_per_trial=settings.gpus_per_trial,
    )
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, run=run),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    fs, storage_path = logs.resolve(settings.storage)
    experiment_path = posixpath.join(storage_path, settings.name)
    # Ray's newer console output ignores custom reporters; the classic one can be trimmed.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Ten checkpoints per trial are few; Ray's warning about frequent snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if resume:
        if not tune.Tuner.can_restore(experiment_path, storage_filesystem=fs):
            raise UserError(f"nothing to resume at {experiment_uri(settings)}: no Tune experiment state there")
        tuner = tune.Tuner.restore(
            experiment_path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=fs,
        )
    else:
        trials = space.trials()
        for trial in trials:
            trial["setting"] = space.setting_label(trial)
        reporter = tune.CLIReporter(
            parameter_columns={f"trial/{key}": key for key in [*space.columns, "seed"]},
            metric_columns={
                "num_inputs": "inputs",
                "validation_sample_error%": "val sample err%",
                "validation_loss": "val loss",
                "throughput": "inputs/s",
            },
            max_report_frequency=30,
        )
        tuner = tune.Tuner(
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
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                progress_reporter=reporter,
                verbose=1,
            ),
        )
        save_settings(settings)
    started = time.monotonic()
    results = tuner.fit()
    wall = time.monotonic() - started
    print(f"\nsweep {settings.name}: {len(results)} trials, {results.num_errors} errored, wall {wall / 60:.1f} min")
    for result in results:
        if result.error:
            print(f"  errored: {result.path}: {str(result.error).splitlines()[0][:300]}")
    print(report(run.logs))
    print(f"plot: {write_plot(settings, run.logs)}")
    print(f"logs: {run.logs}  (pandas.read_parquet reads the folder)")
    return 1 if results.num_errors else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tune_selcopy.run", description=__doc__.split("\n\n")[0])
    p.add_argument("space", nargs="?", help=f"search space: {', '.join(available_spaces())}, or a .yaml space file "
                   "(ours or a reference experiment file); not needed with --resume --name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="replace a fixed trial-config value (repeatable): --set channels=32 --set dilation=1,2,3")
    p.add_argument("--dry-run", action="store_true", help="list settings and parameter counts, train nothing")
    p.add_argument("--trials", type=int, help="seeds per setting (default: the space's)")
    p.add_argument("--max-inputs", type=int, help="training inputs per trial (default: the space's)")
    p.add_argument("--val-count", type=int, help="validation samples (a prefix of the reference 10,000)")
    p.add_argument("--cpus-per-trial", type=float, help="default 1")
    p.add_argument("--gpus-per-trial", type=float, help="default 0.25 on a cluster with GPUs, else 0")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="folder or URI (file://, s3://, gs://)")
    p.add_argument("--name", help="experiment name (default: SPACE-YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted sweep (default: the latest)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded Ray)")
    p.add_argument("--wait-for-nodes", type=float, default=0, metavar="SECONDS",
                   help="on an autoscaling cluster, wait this long for a node that fits a trial")
    p.add_argument("--local-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--local-gpus", type=float, help="GPUs of the embedded Ray (default: torch's count)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        storage = args.storage if "://" in args.storage else os.path.abspath(args.storage)
        if args.resume:
            if args.space is None and args.name is None:
                raise UserError("--resume needs a SPACE (its latest sweep) or --name NAME")
            name = args.name or latest_sweep(storage, space_name_of(args.space))
            settings = load_settings(storage, name)
            if args.space is not None and settings.space != space_name_of(args.space):
                raise UserError(f"sweep {name} ran space {settings.space}, not {args.space}")
            space = settings.resolve_space()
        else:
            if args.space is None:
                raise UserError("give a SPACE: a module name or a .yaml space file")
            sets = parse_sets(args.set)
            flags = trial_overrides(args.max_inputs, args.val_count)
            if set(sets) & set(flags):
                raise UserError(f"{', '.join(sorted(set(sets) & set(flags)))} given both by --set and by its own flag")
            space = load_space(args.space).resolve({**sets, **flags}, args.trials)
            for warning in space.warnings:
                print(f"warning: {warning}", file=sys.stderr)
        if args.dry_run:
            print(dry_run(space))
            return 0
        if not args.resume:
            from tune_selcopy.wiring import check_wiring

            print("".join(f"note: {note}\n" for note in space.notes), end="")
            check_wiring(space.settings, space.varied_keys)
        print(connect(args.address, args.local_cpus, args.local_gpus), flush=True)
        if not args.resume:
            cpus, gpus = default_resources(args.cpus_per_trial, args.gpus_per_trial)
            settings = SweepSettings(
                space=space.name,
                name=args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage=storage,
                trials=args.trials,
                max_inputs=args.max_inputs,
                val_count=args.val_count,
                cpus_per_trial=cpus,
                gpus_per_trial=gpus,
                max_concurrent=args.max_concurrent,
                resolved_space=space.to_data(),
            )
        print(
            f"sweep {settings.name}: space {space.name}, {settings.cpus_per_trial:g} CPU and "
            f"{settings.gpus_per_trial:g} GPU per trial, storage {settings.storage}",
            flush=True,
        )
        return run_sweep(space, settings, args.resume, args.wait_for_nodes)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
