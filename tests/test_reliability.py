"""Bad input and broken environments, as a user meets them: every case ends in one
``error: ...`` line with exit code 2 (130 for Ctrl-C), fast, and before Ray starts where
it can; nothing from storage is ever unpickled as code. The faults that need a running
sweep (Ctrl-C, a full disk, a killed driver) are in test_run.py."""

from __future__ import annotations

import errno
import json
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs
import pytest
import torch

from tune_selcopy import run, train
from tune_selcopy.errors import UserError
from tune_selcopy.science.trial import CHECKPOINT_FILE, Trial, TrialConfig
from tune_selcopy.sweeps import folder as sweep_folder
from tune_selcopy.sweeps import storage
from tune_selcopy.sweeps.space_sources import load_space

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--trials", "1", "--max-inputs", "640", "--val-count", "64"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def ray_started() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


# --- checkpoints: never code, always one line ---------------------------------------------


class _Payload:
    """A pickle that creates a file when unpickled: the harmless stand-in for an attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"config": _Payload(marker)}, ckpt / CHECKPOINT_FILE)
    with open(ckpt / CHECKPOINT_FILE, "rb") as f:  # the payload really is in the file
        assert b"touch" in f.read()
    assert train.main(["--max-inputs", "640", "--val-count", "64", "--checkpoint-dir", str(ckpt)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "refusing checkpoint" in line and "loading it would run code it names (GLOBAL" in line
    assert "weights_only" not in line  # no advice to load it unsafely
    assert not marker.exists()
    # A plain pickle of the same object would have run it: the test can fail.
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_real_checkpoint_loads_with_the_safe_loader(tmp_path):
    config = TrialConfig(max_inputs=640, val_count=64)
    first = Trial(config)
    next(first.validations())
    first.save(tmp_path)
    second = Trial(config)
    second.load(tmp_path)  # weights_only=True
    assert second.validation_index == 1 and second.step == first.step
    assert torch.equal(second.net.module.embedding.weight, first.net.module.embedding.weight)


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"a": 1}, "not a tune_selcopy trial checkpoint"),
        ([1, 2, 3], "not a tune_selcopy trial checkpoint"),
        ("broken-model", "does not fit this trial's model"),
        ("broken-config", "broken config"),
    ],
)
def test_checkpoint_of_the_wrong_structure_is_one_line(tmp_path, content, expected):
    config = TrialConfig(max_inputs=640, val_count=64)
    trial = Trial(config)
    if content == "broken-model":
        state = trial.state_dict()
        state["model"] = {"embedding.weight": torch.zeros(3, 3)}
        content = state
    elif content == "broken-config":
        state = trial.state_dict()
        state["config"] = {**state["config"], "channels": "many"}
        content = state
    torch.save(content, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(UserError, match=expected) as info:
        trial.load(tmp_path)
    assert "\n" not in str(info.value)


# --- train CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--device", "banana"], "unknown device 'banana'"),
        (["--seed", "-1"], "seed -1 must be in 0..2**63-1"),
        (["--seed", str(10**22)], "must be in 0..2**63-1"),
        (["--warmup-steps", "-5"], "warmup_steps -5 must be >= 0"),
        (["--max-inputs", "lots"], "argument --max-inputs: invalid int value: 'lots'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--threads", "0"], "threads must be >= 1"),
    ],
)
def test_train_cli_bad_input_is_one_line(capsys, args, expected):
    assert train.main(["--max-inputs", "640", "--val-count", "64", *args]) == 2
    assert expected in one_error_line(capsys.readouterr().err)


def test_train_cli_unusable_checkpoint_dir_fails_before_training(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for directory in (a_file, a_file / "sub", Path("/proc/no-such-dir")):
        started = time.monotonic()
        assert train.main(["--max-inputs", "640", "--val-count", "64", "--checkpoint-dir", str(directory)]) == 2
        captured = capsys.readouterr()
        assert "is not a writable folder" in one_error_line(captured.err)
        assert "model params" not in captured.out  # nothing was built or trained
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("args, expected", [(["validation", "--count", "0"], "--count must be >= 1"),
                                            (["bogus"], "invalid choice: 'bogus'")])
def test_data_cli_bad_input_is_one_line(capsys, args, expected):
    from tune_selcopy import data

    assert data.main(args) == 2
    assert expected in one_error_line(capsys.readouterr().err)


# --- run: bad input stops before Ray starts ---------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--trials", "0"], "--trials must be >= 1"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5: a trial trains on one GPU, so its share is at most 1"),
        (["--gpus-per-trial", "2"], "--gpus-per-trial 2: a trial trains on one GPU, so its share is at most 1"),
        (["--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
        (["--max-concurrent", "-1"], "--max-concurrent must be >= 1"),
        (["--local-cpus", "0"], "--local-cpus must be >= 1"),
        (["--local-cpus", "-2"], "--local-cpus must be >= 1"),
        (["--local-gpus", "-1"], "--local-gpus must be >= 0"),
        (["--wait-for-nodes", "-3"], "--wait-for-nodes must be >= 0"),
        (["--name", "../escape"], "--name '../escape': use 1-100 letters"),
        (["--name", "a/b"], "--name 'a/b': use 1-100 letters"),
        (["--name", ".hidden"], "--name '.hidden': use 1-100 letters"),
        (["--max-inputs", "5"], "max_inputs 5 must be >= num_validations 10"),
        (["--val-count", "0"], "val_count 0 must be in 1..10000"),
        (["--bogus"], "unrecognized arguments: --bogus (see python -m tune_selcopy.run --help)"),
        (["--trials", "two"], "argument --trials: invalid int value: 'two'"),
        (["--gpus-per-trial", "inf"], "argument --gpus-per-trial: invalid finite value: 'inf'"),
        (["--address", "127.0.0.1:6379", "--local-cpus", "2"], "--local-cpus/--local-gpus declare an embedded Ray"),
        (["--address", "notahost"], "expected host:port, ray://host:port or auto"),
        (["--address", "no-such-host.invalid:6379"], "unknown host 'no-such-host.invalid'"),
        (["--storage", "/proc/tune-selcopy"], "storage /proc/tune-selcopy is not writable"),
        (["--storage", "s3://KEY:SECRET@bucket/x?region=us-east-1"],
         "s3://***@bucket/x?region=us-east-1: a URI must not carry a secret"),
    ],
)
def test_run_bad_input_is_one_line_before_ray(tmp_path, capsys, args, expected):
    argv = ["attn_act", *TINY, "--storage", str(tmp_path), *args]
    started = time.monotonic()
    assert run.main(argv) == 2
    assert expected in one_error_line(capsys.readouterr().err)
    assert not ray_started()
    assert time.monotonic() - started < 15
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing claimed


def test_unreachable_cluster_address_fails_fast(tmp_path, capsys):
    for address in (f"127.0.0.1:{_closed_port()}", f"ray://127.0.0.1:{_closed_port()}"):
        started = time.monotonic()
        assert run.main(["attn_act", *TINY, "--storage", str(tmp_path), "--address", address]) == 2
        assert f"cannot reach Ray cluster at {address}" in one_error_line(capsys.readouterr().err)
        assert time.monotonic() - started < 15 and not ray_started()


def test_ray_address_from_the_environment_is_checked_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    assert run.main(["attn_act", *TINY, "--storage", str(tmp_path)]) == 2
    assert "cannot reach Ray cluster" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("uri", ["gs://tune-selcopy-test/x", "s3://tune-selcopy-test/x"])
def test_unreachable_object_store_is_one_line_within_seconds(uri):
    """Without network (or credentials) gs:// hangs inside pyarrow for minutes and s3://
    fails after Ray started; the probe gives up first. Run in a child process: the
    hanging pyarrow call cannot be cancelled, only left behind."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tune_selcopy.run", "attn_act", *TINY, "--storage", uri],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert f"storage {uri}" in line  # "did not answer within 10 s" offline, "is not writable" online
    assert time.monotonic() - started < 30


def test_read_only_storage_is_one_line(tmp_path, capsys):
    """A read-only filesystem (root ignores folder permissions, so mount one)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount here: {mounted.stderr.decode().strip()}")
    try:
        assert run.main(["attn_act", *TINY, "--storage", str(ro / "results")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"storage {ro / 'results'} is not writable" in line and "Read-only file system" in line
        assert not ray_started()
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_infeasible_request_on_the_embedded_ray_fails_before_ray(tmp_path, capsys):
    assert run.main(["attn_act", *TINY, "--storage", str(tmp_path), "--local-cpus", "2", "--local-gpus", "0.5",
                     "--gpus-per-trial", "1"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(
        "error: no node can run a trial asking CPU 1, GPU 1: the nodes have CPU 2, GPU 0.5; lower"
    )
    assert not ray_started() and list(tmp_path.iterdir()) == []


# --- sweep folders: exclusive, and settings files that are not ours -----------------------------


def _settings(tmp_path: Path, name: str) -> sweep_folder.SweepSettings:
    return sweep_folder.SweepSettings(space="attn_act", name=name, storage=str(tmp_path), trials=1, max_inputs=640,
                             val_count=64, cpus_per_trial=1.0, gpus_per_trial=0.0, max_concurrent=None)


def test_a_sweep_name_is_claimed_once(tmp_path, capsys):
    sweep_folder.claim_sweep(_settings(tmp_path, "taken"))
    started = time.monotonic()
    assert run.main(["attn_act", *TINY, "--storage", str(tmp_path), "--name", "taken"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "a sweep named 'taken' already exists" in line and "--resume --name taken" in line
    assert time.monotonic() - started < 15 and not ray_started()


def test_a_folder_with_anything_in_it_is_not_claimed(tmp_path):
    (tmp_path / "other" / "logs").mkdir(parents=True)
    with pytest.raises(storage.FolderTaken):
        sweep_folder.claim_sweep(_settings(tmp_path, "other"))


@pytest.mark.parametrize("remote", [False, True], ids=["local-exclusive-create", "object-store-markers"])
def test_simultaneous_claims_have_one_winner(tmp_path, monkeypatch, remote):
    if remote:  # any non-local pyarrow filesystem takes the marker protocol
        monkeypatch.setattr(storage, "resolve", lambda uri: (pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()),
                                                              uri.replace(str(tmp_path), "").lstrip("/")))
        monkeypatch.setattr(storage, "CLAIM_SETTLE_S", 0.5)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            storage.claim(str(tmp_path / "same"), "tune_selcopy.json", f"claimant {i}".encode(), taken="taken")
            outcomes.append(f"won {i}")
        except storage.FolderTaken:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("refused") == 7
    assert (tmp_path / "same" / "tune_selcopy.json").read_text() == f"claimant {winners[0].split()[1]}"


def test_default_names_never_collide(tmp_path):
    """Two sweeps started in the same second get distinct default names."""
    default = _settings(tmp_path, "attn_act-20261129-120000")
    names = [sweep_folder.claim_new_sweep(default, numbered=True).name for _ in range(3)]
    assert names == ["attn_act-20261129-120000", "attn_act-20261129-120000-2", "attn_act-20261129-120000-3"]


def _write_sweep(tmp_path: Path, name: str, settings: bytes, state: str | None) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / sweep_folder.RUN_FILE).write_bytes(settings)
    if state is not None:
        (folder / "experiment_state-2026-11-29_12-00-00.json").write_text(state)


@pytest.mark.parametrize(
    "settings, expected",
    [
        (b'{"broken', "is not a tune_selcopy sweep file (not JSON"),
        (b'{"hello": 1}', "is not a tune_selcopy sweep file (expected keys"),
        (b"\x80\x81binary", "is not a tune_selcopy sweep file"),
        (b"[1, 2]", "is not a tune_selcopy sweep file"),
    ],
)
def test_resume_of_a_foreign_or_corrupt_settings_file_is_one_line(tmp_path, capsys, settings, expected):
    _write_sweep(tmp_path, "s", settings, state="{}")
    assert run.main(["attn_act", "--resume", "--name", "s", "--storage", str(tmp_path)]) == 2
    assert expected in one_error_line(capsys.readouterr().err)
    assert not ray_started()


@pytest.mark.parametrize("field, value", [("seeds_per_trial", "2"), ("seeds_per_trial", 0), ("tf32", "maybe"),
                                          ("logical_gpus", "yes"), ("log_to", "mlflow")])
def test_resume_of_a_settings_file_with_a_damaged_field_is_one_line(tmp_path, capsys, field, value):
    data = json.loads(_settings(tmp_path, "s").to_json())
    _write_sweep(tmp_path, "s", json.dumps({**data, field: value}).encode(), state="{}")
    assert run.main(["--resume", "--name", "s", "--storage", str(tmp_path), "--dry-run"]) == 2
    assert "is damaged: " in one_error_line(capsys.readouterr().err)


def test_resume_refuses_options_that_contradict_the_saved_sweep(tmp_path, capsys):
    _write_sweep(tmp_path, "s", _settings(tmp_path, "s").to_json(), state="{}")
    assert run.main(["attn_act", "--resume", "--name", "s", "--trials", "3", "--max-inputs", "640",
                     "--storage", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "which these options contradict: --trials 3 (the sweep has 1); drop them" in line
    # The same command again plus --resume is fine: it gets as far as Ray's (here empty) state.
    assert run.main(["attn_act", *TINY, "--resume", "--name", "s", "--storage", str(tmp_path)]) == 2
    assert "Ray's experiment state experiment_state-2026-11-29_12-00-00.json is damaged" in capsys.readouterr().err


def test_damaged_ray_state_is_refused_not_replaced_by_a_bogus_trial(tmp_path, capsys):
    """A state file cut short (e.g. by a full disk): Ray would log the failure and run a
    trial with an empty config; we stop with one line before Ray starts."""
    good = _settings(tmp_path, "cut").to_json()
    _write_sweep(tmp_path, "cut", good, state='{"trial_data": [')
    assert run.main(["attn_act", "--resume", "--name", "cut", "--storage", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Ray's experiment state experiment_state-2026-11-29_12-00-00.json is damaged" in line
    assert not ray_started()


WHOLE_STATE = json.dumps({"runner_data": {}, "trial_data": [["trial", "metadata"]]})


def test_the_intact_copy_follows_only_whole_states(tmp_path):
    """The copy tracks Ray's newest state file while it is whole; a state cut short (or a
    copy that cannot be written) leaves the last whole one in place."""
    folder = tmp_path / "kept"
    folder.mkdir()
    keeper = sweep_folder.IntactStateKeeper(pafs.LocalFileSystem(), str(folder))
    keeper.update()  # no state yet: nothing to copy
    assert not (folder / sweep_folder.INTACT_STATE).exists()
    state = folder / "experiment_state-2026-11-29_12-00-00.json"
    state.write_text(WHOLE_STATE)
    keeper.update()
    assert (folder / sweep_folder.INTACT_STATE).read_text() == WHOLE_STATE
    state.write_text(WHOLE_STATE[:20])  # what a full disk leaves
    keeper.update()
    assert (folder / sweep_folder.INTACT_STATE).read_text() == WHOLE_STATE
    newer = WHOLE_STATE.replace('"metadata"', '"metadata", "more"')
    (folder / "experiment_state-2026-11-29_13-00-00.json").write_text(newer)  # a resumed session's
    keeper.update()
    assert (folder / sweep_folder.INTACT_STATE).read_text() == newer
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


class _FullDisk:
    """A local filesystem whose writes stop part-way with ENOSPC, as a full disk does."""

    def __init__(self):
        self.local = pafs.LocalFileSystem()

    def __getattr__(self, name):
        return getattr(self.local, name)

    def open_output_stream(self, path):
        with open(path, "wb") as out:
            out.write(b'{"runner')
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_copy_keeps_the_previous_one(tmp_path):
    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / sweep_folder.INTACT_STATE).write_text(WHOLE_STATE)
    (folder / "experiment_state-2026-11-29_13-00-00.json").write_text(WHOLE_STATE.replace("trial", "other"))
    keeper = sweep_folder.IntactStateKeeper(_FullDisk(), str(folder))
    keeper.update()  # the storage error is left for the trials to meet
    assert (folder / sweep_folder.INTACT_STATE).read_text() == WHOLE_STATE
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_a_damaged_state_is_replaced_by_its_intact_copy(tmp_path, capsys):
    """The full disk case: Ray's newest state was cut short, the copy is whole. The resume
    puts the copy in its place and says so; without a copy it refuses (test above)."""
    _write_sweep(tmp_path, "cut", _settings(tmp_path, "cut").to_json(), state='{"trial_data": [')
    (tmp_path / "cut" / sweep_folder.INTACT_STATE).write_text(WHOLE_STATE)
    note = sweep_folder.check_experiment_state(sweep_folder.load_settings(str(tmp_path), "cut"))
    assert note.startswith("Ray's experiment state experiment_state-2026-11-29_12-00-00.json was damaged")
    assert "resuming from its last intact copy (saved " in note
    assert (tmp_path / "cut" / "experiment_state-2026-11-29_12-00-00.json").read_text() == WHOLE_STATE
    assert sweep_folder.check_experiment_state(sweep_folder.load_settings(str(tmp_path), "cut")) is None  # whole now


def test_a_corrupt_neighbour_does_not_block_resume(tmp_path, capsys):
    _write_sweep(tmp_path, "broken", b"{not json", state=None)
    _write_sweep(tmp_path, "started-no-state", _settings(tmp_path, "started-no-state").to_json(), state=None)
    assert run.main(["attn_act", "--resume", "--storage", str(tmp_path)]) == 2
    # The broken folder was skipped; the latest readable sweep was picked and checked.
    assert "nothing to resume at" in one_error_line(capsys.readouterr().err)
    assert "started-no-state" in (tmp_path / "started-no-state" / sweep_folder.RUN_FILE).read_text()


def test_settings_round_trip_and_old_files_without_the_marker(tmp_path):
    settings = _settings(tmp_path, "x")
    assert sweep_folder.SweepSettings.from_json(settings.to_json(), str(tmp_path), "x") == settings
    old = json.loads(settings.to_json())
    del old["format"]
    assert sweep_folder.SweepSettings.from_json(json.dumps(old).encode(), str(tmp_path), "x") == settings


# --- storage failures a retry cannot fix ----------------------------------------------------


def test_a_real_enospc_through_pyarrow_is_fatal():
    fs = pafs.LocalFileSystem()
    with pytest.raises(OSError) as info:
        with fs.open_output_stream("/dev/full") as out:  # the kernel's always-full device
            out.write(b"x" * 2**20)
    assert storage.fatal_cause(info.value) is info.value
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = info.value
    assert storage.fatal_cause(wrapped) is info.value
    assert storage.fatal_cause(OSError(errno.ECONNRESET, "Connection reset by peer")) is None
    assert storage.fatal_cause(OSError(errno.EACCES, "denied")) is not None


def test_room_is_checked_against_the_sweep_estimate(tmp_path, monkeypatch):
    configs = load_space("attn_act").resolve().settings
    need = run.sweep_bytes(configs, seeds=5)
    # 10 trials of a 229,632-parameter model: 10 checkpoints of ~2.8 MB each (all kept), plus rows
    assert 260 * 2**20 < need < 290 * 2**20
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: SimpleNamespace(free=need - 1))
    with pytest.raises(storage.StorageError, match="MiB free, but 10 trials need about"):
        storage.check_room(str(tmp_path), need, "10 trials")
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: SimpleNamespace(free=need))
    storage.check_room(str(tmp_path), need, "10 trials")
