"""The trackers a researcher already uses, fed by a real sweep: TensorBoard (Ray's event
files, read with TensorBoard's own reader), MLflow (a local file store, read back with
MLflow's client) and Weights & Biases (offline mode, its run files read back); the checks
before Ray starts; the embedded Ray's dashboard; and the trackers across --resume."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pandas as pd
import pytest

from test_run import TINY, kill_after_one_trial, sweep
from tune_selcopy.errors import UserError
from tune_selcopy.sweeps import trackers
from tune_selcopy.sweeps.folder import load_settings
from tune_selcopy.sweeps.tracker_callbacks import mlflow_name

SPACE = "name: two\nseeds: 1\ngrid:\n  attnact: [elu+1, dpfp]\n"
METRIC = "validation_sample_error%"
# MLflow 3 keeps its file store only on request; the tests use it to stay offline
OFFLINE = {"MLFLOW_ALLOW_FILE_STORE": "true", "WANDB_MODE": "offline"}


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """This process and the sweeps it starts log offline; W&B writes its runs under
    ``tmp_path/wandb``."""
    for key, value in {**OFFLINE, "WANDB_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)


def parquet_curves(logs: Path) -> dict[str, list[float]]:
    """trial id -> the metric at validations 1..N, from the sweep's own logs."""
    df = pd.read_parquet(logs).sort_values("validation_index")
    return {trial: list(group[METRIC]) for trial, group in df.groupby("trial_id")}


def mlflow_curves(uri: str, experiment: str) -> dict[str, list[tuple[int, float]]]:
    """MLflow run name -> (step, value) of the metric, read with MLflow's client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    names = [run.info.run_name for run in runs]
    assert len(names) == len(set(names)), f"a trial has two MLflow runs: {sorted(names)}"
    return {run.info.run_name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                                                                                       mlflow_name(METRIC)))
            for run in runs}


def wandb_records(path: Path):
    """The records of a W&B run file (``run-<id>.wandb``): its LevelDB-style log of 32 KiB
    blocks, each record a 7-byte header (crc, length, type) and a protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if (room := 32768 - pos % 32768) < 7:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # the rest of a block is padding
            pos += room
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_curves(folder: Path) -> dict[str, list[float]]:
    """W&B run id -> the metric at each logged step, from every offline run under ``folder``."""
    out: dict[str, list[float]] = {}
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
                if METRIC in items:  # other history records carry system metrics only
                    out.setdefault(path.stem.removeprefix("run-"), []).append(float(json.loads(items[METRIC])))
    return out


def tensorboard_curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard run -> (step, value) of the metric, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = EventMultiplexer().AddRunsFromDirectory(str(folder))
    events.Reload()
    tag = "ray/tune/" + METRIC.replace("%", "_")  # tensorboardX writes % as _
    return {run: [(e.step, e.value) for e in events.Scalars(run, tag)] for run in events.Runs()}


def test_one_sweep_feeds_tensorboard_mlflow_and_wandb(tmp_path, offline):
    space = tmp_path / "two.yaml"
    space.write_text(SPACE)
    store, mlruns = tmp_path / "store", f"file://{tmp_path / 'mlruns'}"
    result = sweep(str(space), *TINY, "--storage", str(store), "--name", "s", "--dashboard",
                   "--log-to", f"mlflow={mlruns}", "--log-to", "wandb=selcopy-test")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mlflow: logging every trial to {mlruns}\n" in result.stdout
    assert f"wandb: logging every trial to project selcopy-test (offline; its run files under {tmp_path}/wandb)\n" \
        in result.stdout
    # Ray's own answer about its dashboard: it listened on loopback and wants the token
    assert "dashboard: http://127.0.0.1:" in result.stdout and "`ray get-auth-token`" in result.stdout

    ours = parquet_curves(store / "s" / "logs")
    assert len(ours) == 2 and all(len(v) == 10 for v in ours.values())
    # TensorBoard: one run per trial (named by its id), one point per validation
    assert tensorboard_curves(store / "s") == {
        trial: [(step, pytest.approx(v)) for step, v in enumerate(values, 1)] for trial, values in ours.items()}
    # MLflow: the space is the experiment, one run per trial, the metric at every validation
    assert mlflow_curves(mlruns, "two") == {
        f"train_trial_{trial}": [(step, pytest.approx(v)) for step, v in enumerate(values, 1)]
        for trial, values in ours.items()}
    # W&B: one offline run per trial (its id the trial id), every validation in it
    assert wandb_curves(tmp_path) == {trial: pytest.approx(values) for trial, values in ours.items()}
    assert load_settings(str(store), "s").log_to == (f"mlflow={mlruns}", "wandb=selcopy-test")


def test_a_resumed_sweep_continues_the_same_tracker_runs(tmp_path, offline):
    """--log-to is part of the sweep: --resume, without the option, logs on to the same
    MLflow and W&B runs (Ray restores its callbacks; ours finds each trial's run)."""
    space = tmp_path / "three.yaml"
    space.write_text("name: three\nseeds: 1\ngrid:\n  qkv: [QK, KV, QKV]\n")
    mlruns, logs = f"file://{tmp_path / 'mlruns'}", tmp_path / "three" / "logs"
    kill_after_one_trial(
        [str(space), "--max-inputs", "640", "--val-count", "64", "--local-cpus", "2", "--max-concurrent", "1",
         "--storage", str(tmp_path), "--name", "three", "--log-to", f"mlflow={mlruns}", "--log-to", "wandb"],
        logs,
    )
    again = sweep(str(space), "--resume", "--name", "three", "--storage", str(tmp_path), "--log-to", "mlflow")
    assert again.returncode == 2 and "--log-to mlflow (the sweep has mlflow=" in again.stderr
    result = sweep("--resume", "--name", "three", "--storage", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    ours = parquet_curves(logs)
    assert len(ours) == 3 and all(len(v) == 10 for v in ours.values())
    runs = mlflow_curves(mlruns, "three")
    assert sorted(runs) == sorted(f"train_trial_{trial}" for trial in ours)  # one run per trial, resumed ones too
    for trial, values in ours.items():
        steps = dict(runs[f"train_trial_{trial}"])  # a validation replayed after the kill logs its step again
        assert sorted(steps) == list(range(1, 11)) and [steps[s] for s in range(1, 11)] == pytest.approx(values)
    # W&B: every trial's runs carry its id, so `wandb sync` puts a resumed trial in one run
    assert set(wandb_curves(tmp_path)) == set(ours)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("values, message", [
    (["bogus"], "--log-to 'bogus': use mlflow, mlflow=URI, wandb or wandb=PROJECT"),
    (["mlflow="], "--log-to 'mlflow=': use mlflow, mlflow=URI, wandb or wandb=PROJECT"),
    (["wandb", "wandb=x"], "--log-to wandb given twice ('wandb' and 'wandb=x')"),
])
def test_bad_log_to_values(values, message):
    with pytest.raises(UserError) as exc:
        trackers.parse(values)
    assert str(exc.value) == message


def test_log_to_values_are_kept_in_one_order():
    assert trackers.parse(["wandb=p", "mlflow"]) == ("mlflow", "wandb=p")


def test_a_missing_package_is_one_line_before_ray(tmp_path, monkeypatch):
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^--log-to wandb: the wandb package is not installed: "
                                         r"pip install 'tune_selcopy\[wandb\]'$"):
        trackers.check(["wandb"])


def test_mlflow_stores_that_do_not_open_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(UserError, match="cannot open the MLflow store file://.*maintenance mode"):
        trackers.check([f"mlflow=file://{tmp_path}/mlruns"])
    port = _closed_port()
    with pytest.raises(UserError, match=f"cannot open the MLflow store http://127.0.0.1:{port}: "):
        trackers.check([f"mlflow=http://127.0.0.1:{port}"])


def test_wandb_online_without_a_login_is_one_line(tmp_path, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SETUP_API_KEY_HOOK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no saved login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    with pytest.raises(UserError, match=r"^--log-to wandb: no W&B login: run `wandb login`"):
        trackers.check(["wandb"])


def test_the_sweep_stops_before_ray_when_a_tracker_cannot_work(tmp_path):
    result = sweep("attn_act", *TINY, "--storage", str(tmp_path), "--log-to", f"mlflow=http://127.0.0.1:{_closed_port()}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --log-to mlflow: cannot open the MLflow store http://127.0.0.1:")
    assert "started an embedded" not in result.stdout and list(tmp_path.iterdir()) == []


def test_dashboard_is_for_the_embedded_ray_only(tmp_path):
    result = sweep("attn_act", *TINY, "--storage", str(tmp_path), "--dashboard", "--address", "127.0.0.1:1")
    assert result.returncode == 2 and result.stderr.startswith("error: --dashboard starts the embedded Ray's dashboard")


def test_sweeps_saved_before_trackers_resume_without_them(tmp_path):
    from tune_selcopy.sweeps.folder import SweepSettings

    settings = SweepSettings(space="attn_act", name="x", storage=str(tmp_path), trials=None, max_inputs=None,
                             val_count=None, cpus_per_trial=1.0, gpus_per_trial=0.0, max_concurrent=None,
                             log_to=("mlflow=file:///m",))
    assert SweepSettings.from_json(settings.to_json(), str(tmp_path), "x") == settings
    old = json.loads(settings.to_json())
    del old["log_to"]
    assert SweepSettings.from_json(json.dumps(old).encode(), str(tmp_path), "x").log_to == ()
    with pytest.raises(UserError, match="is damaged: log_to"):
        SweepSettings.from_json(json.dumps({**old, "log_to": "mlflow"}).encode(), str(tmp_path), "x")
