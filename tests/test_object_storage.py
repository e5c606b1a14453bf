"""Sweeps on object stores, against real servers on 127.0.0.1 (tests/object_stores.py):
moto's S3 with IAM enforced and a GCS emulator that refuses what GCS would. Each store
is named by a URI with pyarrow's options in its query, as an S3-compatible store is, and
the sweep holds only the object permissions docs/storage.md grants.

One server per store for the module; one killed-and-resumed sweep per store covers the
run from start to table, the resume with every row once and the analysis read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from object_stores import GcsStore, S3Store

from tune_selcopy import trial_logs, uris
from tune_selcopy.sweeps import folder, storage

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
# 4 validations per trial, not 10: each writes a row and a checkpoint, which on the GCS emulator
# cost most of the test's time.
VALIDATIONS = 4
TINY = ["--trials", "1", "--max-inputs", "1280", "--val-count", "64", "--set", f"num_validations={VALIDATIONS}",
        "--local-cpus", "2"]
# Credentials and endpoints of this machine must not leak into the sweeps under test.
AMBIENT = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
           "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "STORAGE_EMULATOR_HOST")


@pytest.fixture(scope="module", params=["s3", "gcs"])
def store(request):
    server = S3Store() if request.param == "s3" else GcsStore()
    yield server
    server.close()


@pytest.fixture
def as_sweeper(store, monkeypatch):
    """This process holds the sweep's credentials and nothing else."""
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in store.env.items():
        monkeypatch.setenv(name, value)


def sweep_env(store) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in AMBIENT}, **store.env}


def rows(store, logs: str) -> pd.DataFrame:
    fs, path = uris.resolve(logs)
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
             if i.base_name.endswith(".parquet") and not i.base_name.startswith(".")]
    return pd.DataFrame([pq.read_table(f, filesystem=fs).to_pylist()[0] for f in files])


def test_a_killed_sweep_resumes_to_its_table_and_analyze_reads_it_back(store, as_sweeper):
    """Killed once its first trial is done (one trial at a time), resumed: every row once,
    the table, the plot and the logs named by URIs that keep the store's options."""
    storage_uri = store.uri("killed-sweeps")
    logs = trial_logs.logs_uri(storage_uri, "s")
    env = sweep_env(store)
    requests_before = len(getattr(store, "requests", []))
    started = time.monotonic()
    driver = subprocess.Popen([PY, "-m", "tune_selcopy.run", "attn_act", *TINY, "--max-concurrent", "1",
                               "--storage", storage_uri, "--name", "s"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            done = rows(store, logs)
            if len(done) and (done["validation_index"] == VALIDATIONS).any():
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no trial finished: {driver.communicate()[0][-3000:]}")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its embedded Ray, at once
        driver.wait()
    killed = time.monotonic() - started
    before = rows(store, logs)
    assert VALIDATIONS <= len(before) < 2 * VALIDATIONS

    resumed = subprocess.run([PY, "-m", "tune_selcopy.run", "--resume", "--name", "s", "--storage", storage_uri],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    df = rows(store, logs)
    assert len(df) == 2 * VALIDATIONS and df["trial_id"].nunique() == 2
    assert not df.duplicated(["trial_id", "validation_index"]).any()
    finished_first = before.groupby("trial_id")["validation_index"].max().eq(VALIDATIONS).idxmax()
    first = before[before["trial_id"] == finished_first].set_index("validation_index")["timestamp"]
    again = df[df["trial_id"] == finished_first].set_index("validation_index")["timestamp"]
    assert again.equals(first)  # the finished trial was not run again
    out = resumed.stdout
    assert "## s (space attn_act)" in out and "All 2 trials finished." in out
    plot = uris.join(storage_uri, "s", "curves.png")
    assert f"plot: {plot}" in out and f"logs: {logs}" in out
    fs, path = uris.resolve(plot)
    assert fs.get_file_info(path).size > 10_000

    analyzed = subprocess.run([PY, "-m", "tune_selcopy.analyze", logs], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    assert "## s (space attn_act)" in analyzed.stdout and "All 2 trials finished." in analyzed.stdout
    if isinstance(store, GcsStore):  # not one request outside the documented permissions
        assert [r for r in store.requests[requests_before:] if not r.allowed] == []
    print(f"{store.kind}: killed after {killed:.1f} s, resumed in the rest of "
          f"{time.monotonic() - started:.1f} s")


def test_two_claims_of_one_name_at_once_have_one_winner(store, as_sweeper):
    settings = folder.SweepSettings(space="attn_act", name="race", storage=store.uri("claims"), trials=1,
                                    max_inputs=None, val_count=None, cpus_per_trial=1.0, gpus_per_trial=0.0,
                                    max_concurrent=None)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            folder.claim_sweep(settings)
            outcomes.append("won")
        except storage.FolderTaken as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted(["won", f"a sweep named 'race' already exists at {folder.experiment_uri(settings)}: "
                                              "continue it with --resume --name race, or choose another --name"])
    assert folder.load_settings(settings.storage, "race") == settings
    fs, path = uris.resolve(folder.experiment_uri(settings))
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(path))]
    assert folder.RUN_FILE in names and sum(n.startswith(".claim-") for n in names) == 1  # the loser's is gone


def test_the_storage_check_needs_only_object_permissions(store, as_sweeper, monkeypatch):
    """On a fresh prefix, with exactly the documented permissions, the check passes; what
    it does is what it needs (S3: a user without s3:DeleteObject fails it; GCS: pyarrow's
    own recursive create, which the check used to call, asks for the bucket's metadata)."""
    fresh = store.uri("fresh/a/b")
    if isinstance(store, S3Store):
        storage.check_writable(fresh)
        for name, value in store.keys["no-delete"].items():
            monkeypatch.setenv(name, value)
        with pytest.raises(storage.UserError, match=r"^storage s3://sweeps/fresh/c\?.* is not writable: .*ACCESS_DENIED"):
            storage.check_writable(store.uri("fresh/c"))
        with pytest.raises(storage.UserError, match="not writable: .*ACCESS_DENIED"):
            storage.check_writable(f"s3://no-such-bucket/x?endpoint_override=127.0.0.1:{store.port}&scheme=http"
                                   "&region=us-east-1")
        return
    before = len(store.requests)
    storage.check_writable(fresh)
    calls = store.requests[before:]
    assert {p for r in calls for p in r.needed} <= store.granted and all(r.allowed for r in calls)
    assert any(r.method == "DELETE" for r in calls)  # it deleted its probe
    fs, path = uris.resolve(store.uri("unmarked/d"))  # no folder marker above it
    with pytest.raises(OSError, match="storage.buckets.get"):
        fs.create_dir(path, recursive=True)
    assert [r.needed for r in store.requests[before:] if not r.allowed] == [{"storage.buckets.get"}]


def test_query_options_pyarrow_refuses_are_one_line_before_anything_starts(store, as_sweeper, capsys, tmp_path):
    from tune_selcopy import run

    bad = store.uri("x") + "&bogus=1"
    assert run.main(["attn_act", *TINY, "--storage", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot open {bad}: Unexpected query parameter in {store.kind.upper()} URI: 'bogus'"]
    fs, path = uris.resolve(store.uri("x"))
    assert fs.get_file_info(path).type == pafs.FileType.NotFound  # nothing written
