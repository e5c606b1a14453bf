"""A sweep's folder, ``<storage>/<name>``: its saved settings, its exclusive claim, and
finding one to resume.

``tune_selcopy.json`` holds what defines the sweep beyond Ray's own experiment state, so
``--resume`` rebuilds it without the original command line or space file; Ray's state
(``experiment_state-*.json``, ``tuner.pkl``) lies next to it.
"""

from __future__ import annotations

import fnmatch
import json
import math
import posixpath
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import pyarrow.fs as pafs

from tune_selcopy import trial_logs, uris
from tune_selcopy.errors import UserError, one_line
from tune_selcopy.science.trial import DEFAULT_TF32, TF32_MODES
from tune_selcopy.sweeps import storage
from tune_selcopy.sweeps.space_sources import load_space
from tune_selcopy.sweeps.spaces import ResolvedSpace

RUN_FILE = "tune_selcopy.json"  # the sweep's own settings, read back by --resume
RUN_FILE_FORMAT = "tune_selcopy sweep settings, version 1"
ADDED_KEYS = frozenset({"resolved_space", "log_to", "logical_gpus", "seeds_per_trial", "tf32"})  # settings files before these lack them
# A sweep is one folder directly under the storage: its name cannot leave it. (A space name is
# shorter, spaces.SPACE_NAME, so that its default sweep name NAME-YYYYmmdd-HHMMSS[-N] fits.)
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


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
    # --log-to (trackers.parse): Ray restores the trackers' callbacks on --resume, and this
    # lets the checks before Ray see them. Empty in sweeps saved before trackers existed.
    log_to: tuple[str, ...] = ()
    # The cluster's GPUs are declared for testing (run --logical-gpus, or --local-gpus): a
    # trial holding a share that torch cannot use trains on CPU instead of stopping.
    logical_gpus: bool = False
    seeds_per_trial: int = 1  # seeds stacked in one trial (run --seeds-per-trial)
    tf32: str = DEFAULT_TF32  # a science.trial.TF32_MODES mode (run --tf32)

    def resolve_space(self) -> ResolvedSpace:
        if self.resolved_space is None:
            return load_space(self.space).resolve(self.overrides(), self.trials)
        return ResolvedSpace.from_data(self.resolved_space)

    def overrides(self) -> dict[str, Any]:
        return trial_overrides(self.max_inputs, self.val_count)

    def to_json(self) -> bytes:
        return json.dumps({"format": RUN_FILE_FORMAT, **asdict(self)}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, storage: str, name: str) -> "SweepSettings":
        """Parse a saved RUN_FILE; ``storage``/``name`` are where it was found (it may have moved).

        ``UserError`` for anything that is not one of ours (corrupt, foreign, other version).
        """
        where = uris.join(storage, name, RUN_FILE)
        try:
            values = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{where} is not a tune_selcopy sweep file (not JSON: {exc})") from None
        expected = {f.name for f in fields(cls)}
        # Files from before the format marker are accepted when their keys match exactly,
        # and older files when they lack only keys added since (which have defaults).
        if not isinstance(values, dict) or values.pop("format", RUN_FILE_FORMAT) != RUN_FILE_FORMAT \
                or not expected - ADDED_KEYS <= set(values) <= expected:
            found = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise UserError(f"{where} is not a tune_selcopy sweep file (expected keys {sorted(expected)}, found {found})")
        log_to = values.get("log_to", [])
        if not isinstance(log_to, list) or not all(isinstance(v, str) for v in log_to):
            raise UserError(f"{where} is damaged: log_to {log_to!r}")
        settings = cls(**{**values, "storage": storage, "name": name, "log_to": tuple(log_to)})
        numbers = (settings.cpus_per_trial, settings.gpus_per_trial)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers) or not isinstance(
            settings.space, str
        ):
            raise UserError(f"{where} is damaged: space {settings.space!r}, resources {numbers}")
        stack, tf32, logical = settings.seeds_per_trial, settings.tf32, settings.logical_gpus
        if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1 or tf32 not in TF32_MODES \
                or not isinstance(logical, bool):
            raise UserError(f"{where} is damaged: seeds_per_trial {stack!r}, tf32 {tf32!r}, logical_gpus {logical!r}")
        return settings


def trial_overrides(max_inputs: int | None, val_count: int | None) -> dict[str, Any]:
    """The fixed trial values a sweep replaces (for smaller, quicker sweeps)."""
    return {k: v for k, v in (("max_inputs", max_inputs), ("val_count", val_count)) if v is not None}


def experiment_uri(settings: SweepSettings) -> str:
    return uris.join(settings.storage, settings.name)


def save_settings(settings: SweepSettings) -> None:
    """Rewrite the sweep's settings file (the folder is already claimed)."""
    fs, path = uris.resolve(uris.join(experiment_uri(settings), RUN_FILE))
    with fs.open_output_stream(path) as out:
        out.write(settings.to_json())


def claim_sweep(settings: SweepSettings) -> None:
    """Make ``<storage>/<name>`` this sweep's own, or refuse: two sweeps in one folder
    would merge their logs into fake replicates."""
    storage.claim(
        experiment_uri(settings),
        RUN_FILE,
        settings.to_json(),
        taken=f"a sweep named {settings.name!r} already exists at {experiment_uri(settings)}: continue it with "
        f"--resume --name {settings.name}, or choose another --name",
    )


def claim_new_sweep(settings: SweepSettings, numbered: bool) -> SweepSettings:
    """Claim ``settings``' folder and write them there; return what was claimed. With
    ``numbered`` (a default name), a taken name gets a suffix -2, -3, ... instead of an
    error, for sweeps started in the same second."""
    names = [settings.name, *(f"{settings.name}-{i}" for i in range(2, 10))] if numbered else [settings.name]
    for name in names[:-1]:
        try:
            claim_sweep(claimed := SweepSettings(**{**asdict(settings), "name": name}))
            return claimed
        except storage.FolderTaken:
            continue
    claim_sweep(claimed := SweepSettings(**{**asdict(settings), "name": names[-1]}))
    return claimed


def release_sweep(settings: SweepSettings) -> None:
    """Undo ``claim_sweep`` for a sweep that never started, so its name can be used again."""
    fs, path = uris.resolve(experiment_uri(settings))
    try:
        fs.delete_dir(path)
    except OSError:
        pass  # nothing more to undo; the next start with this name says the folder is taken


def load_settings(storage_uri: str, name: str) -> SweepSettings:
    fs, path = uris.resolve(uris.join(storage_uri, name, RUN_FILE))
    try:
        with fs.open_input_stream(path) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise UserError(f"nothing to resume: no sweep at {uris.join(storage_uri, name)}") from None
    except OSError as exc:
        raise UserError(f"cannot read {uris.join(storage_uri, name, RUN_FILE)}: {one_line(exc, 300)}") from None
    return SweepSettings.from_json(data, storage_uri, name)


def latest_sweep(storage_uri: str, space: str) -> str:
    """The most recently started sweep of ``space`` under ``storage`` (for --resume).

    Folders whose settings file cannot be read are skipped, not fatal: one damaged
    neighbour must not block resuming another sweep.
    """
    fs, root = uris.resolve(storage_uri)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        candidates = [e.base_name for e in entries if e.type == pafs.FileType.Directory]
        run_files = fs.get_file_info([posixpath.join(root, name, RUN_FILE) for name in candidates])
    except OSError as exc:
        raise UserError(f"cannot list {storage_uri}: {one_line(exc, 300)}") from None
    started = {}
    for name, info in zip(candidates, run_files):
        if info.type != pafs.FileType.File:
            continue
        try:
            if load_settings(storage_uri, name).space == space:
                started[name] = info.mtime_ns
        except UserError:
            continue
    if not started:
        raise UserError(f"nothing to resume: no sweep of {space} under {storage_uri}")
    return max(started, key=started.get)


STATE_PATTERN = "experiment_state-*.json"  # Ray's experiment state, one file per driver session
# The last intact copy of Ray's newest experiment state. Ray rewrites its state in place,
# so a full disk can cut it short; this copy is replaced atomically and only by an intact
# state. No ".json"/".pkl" suffix: Ray copies those back and forth on resume, in place.
INTACT_STATE = "experiment_state.intact"


def _intact(data: bytes) -> bool:
    """Whether ``data`` is a whole Ray experiment state with at least one trial."""
    try:
        state = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and {"runner_data", "trial_data"} <= set(state) and bool(state["trial_data"])


def _newest_state(fs: pafs.FileSystem, path: str) -> pafs.FileInfo | None:
    """Ray's newest experiment state file in the sweep folder ``path`` (Ray resumes from
    the newest, by name), or None."""
    infos = [info for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
             if fnmatch.fnmatch(info.base_name, STATE_PATTERN)]
    return max(infos, key=lambda info: info.base_name) if infos else None


def _read(fs: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except OSError:
        return None


class IntactStateKeeper:
    """Keeps ``INTACT_STATE`` up to date with Ray's newest experiment state in the sweep
    folder ``path`` of ``fs`` while the sweep runs; ``update`` is one listing when nothing
    changed."""

    def __init__(self, fs: pafs.FileSystem, path: str):
        self.fs, self.path = fs, path
        self._copied: tuple[str, int | None, int | None] | None = None  # name, mtime, size

    def update(self) -> None:
        """Copy Ray's newest state if it changed and is intact. Storage errors are left
        for the trials to meet and report: a failed copy keeps the previous one."""
        try:
            newest = _newest_state(self.fs, self.path)
            if newest is None or (newest.base_name, newest.mtime_ns, newest.size) == self._copied:
                return
            data = _read(self.fs, newest.path)
            if data is not None and _intact(data):
                trial_logs.write_atomically(self.fs, posixpath.join(self.path, INTACT_STATE), data)
                self._copied = (newest.base_name, newest.mtime_ns, newest.size)
        except OSError:
            pass


def check_experiment_state(settings: SweepSettings) -> str | None:
    """Make sure Ray can resume this sweep: refuse without Ray's experiment state (Ray
    would run a trial with an empty config); when the newest one is damaged (e.g. cut
    short by a full disk), put the last intact copy in its place and return a line that
    says so; refuse if there is none."""
    fs, path = uris.resolve(experiment_uri(settings))
    try:
        newest = _newest_state(fs, path)
    except OSError as exc:
        raise UserError(f"cannot list {experiment_uri(settings)}: {one_line(exc, 300)}") from None
    if newest is None:
        raise UserError(
            f"nothing to resume at {experiment_uri(settings)}: no Ray experiment state there (the sweep stopped "
            "before its first trial started; delete the folder to start again under this name)"
        )
    data = _read(fs, newest.path)
    if data is not None and _intact(data):
        return None
    copy_path = posixpath.join(path, INTACT_STATE)
    copy = _read(fs, copy_path)
    if copy is None or not _intact(copy):
        raise UserError(
            f"cannot resume {experiment_uri(settings)}: Ray's experiment state {newest.base_name} is "
            f"damaged or empty and there is no intact copy; the Parquet logs in "
            f"{trial_logs.logs_uri(settings.storage, settings.name)} are intact, but the unfinished trials cannot be "
            "continued"
        )
    try:
        saved = fs.get_file_info(copy_path).mtime
        trial_logs.write_atomically(fs, newest.path, copy)
    except OSError as exc:
        raise UserError(f"cannot restore {newest.path} from its intact copy: {one_line(exc, 300)}") from None
    when = f" (saved {saved:%Y-%m-%d %H:%M:%S %Z})" if saved else ""
    return (
        f"Ray's experiment state {newest.base_name} was damaged (cut short by a full disk?): resuming from its "
        f"last intact copy{when}; trials continue from the checkpoints it names"
    )
