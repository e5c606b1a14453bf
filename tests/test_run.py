"""The sweep service end to end on real Ray with tiny trials: spaces, dry run, fractional
GPU packing, Parquet logs, retries, resume, job submission, several nodes, bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tune_selcopy import run
from tune_selcopy.science.trial import TrialConfig
from tune_selcopy.sweeps import folder as sweep_folder
from tune_selcopy.sweeps.space_sources import load_space
from tune_selcopy.sweeps.trainable import CRASH_ENV

PY = sys.executable
TINY = ["--max-inputs", "1280", "--val-count", "64"]
ROOT = Path(__file__).resolve().parents[1]


def sweep(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "tune_selcopy.run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def read_logs(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def assert_complete(df: pd.DataFrame, trials: int, validations: int = 10) -> None:
    assert df["trial_id"].nunique() == trials
    assert len(df) == trials * validations
    assert not df.duplicated(["trial_id", "validation_index"]).any()
    assert sorted(df.groupby("trial_id")["validation_index"].apply(sorted).iloc[0]) == list(
        range(1, validations + 1)
    )


# --- spaces and dry run (no Ray) ---------------------------------------------------------


@pytest.mark.parametrize(
    "space, settings, trials, params",
    [
        ("attn_act", 2, 10, {229_632}),
        ("attn_invent", 16, 160, {229_632, 282_944, 246_272, 299_584}),
    ],
)
def test_dry_run_counts_and_params(capsys, space, settings, trials, params):
    assert run.main([space, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{settings} settings, {trials} trials" in out
    setting_lines = [line for line in out.splitlines() if "model params" in line]
    assert len(setting_lines) == settings
    seen = {int(line.split("model params")[1].split()[0].replace(",", "")) for line in setting_lines}
    assert seen == params


def test_attn_invent_params_per_setting(capsys):
    run.main(["attn_invent", "--dry-run"])
    lines = {l.split("model params")[0].strip(): l for l in capsys.readouterr().out.splitlines() if "params" in l}
    assert "229,632" in lines["attn=0,0,T qkv=QK attnact=elu+1"]
    assert "282,944" in lines["attn=0,0,T qkv=QKV attnact=elu+1"]
    assert "246,272" in lines["attn=0,0,4 qkv=KV attnact=elu+1"]
    assert "299,584" in lines["attn=0,0,8 qkv=QKV attnact=elu+1"]


def test_space_declarations():
    act = load_space("attn_act").resolve()
    assert act.varied_keys == ["attnact"] and act.seeds == 5
    invent = load_space("attn_invent")
    assert invent.resolve().varied_keys == ["attn", "qkv"] and invent.seeds == 10
    # The reference's list-length filter: a combination whose config is invalid is dropped.
    broken = dataclasses.replace(invent, grid={**invent.grid, "attn": [(0, True), (0, 0, True)]})
    assert {s["attn"] for s in broken.resolve().settings} == {"0,0,T"}


def test_unknown_space_is_one_line_error():
    result = sweep("no_such_space")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown space 'no_such_space'; available: attn_act, attn_invent, or a .yaml space file"
    ]


@pytest.mark.parametrize("space", ["attn_act", str(ROOT / "search_spaces/reference/attn_act.yml"), "act.yaml"])
def test_miswired_space_is_refused(monkeypatch, capsys, tmp_path, space):
    """The published bug: attnact never reaches the model. The guard names the key, for a
    module, a reference experiment file and a space file alike."""
    if space == "act.yaml":
        space = str(tmp_path / space)
        Path(space).write_text("seeds: 2\ngrid: {attnact: [elu+1, dpfp]}\n")
    original = TrialConfig.model_config
    monkeypatch.setattr(
        TrialConfig,
        "model_config",
        lambda self: dataclasses.replace(original(self), attention_activation="elu+1"),
    )
    store = tmp_path / "store"
    assert run.main([space, *TINY, "--storage", str(store), "--name", "miswired"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "miswired search space: key 'attnact' changes nothing" in err
    assert list(store.iterdir()) == []  # the name was released: fix the space and rerun it


# --- real sweeps -------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _hex_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address from /proc/net/tcp{,6}: little-endian 32-bit words in hex."""
    raw = bytes.fromhex(text)
    return ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def listening_addresses(root: int) -> set[str]:
    """The local addresses of the TCP sockets that process ``root`` and its descendants listen on."""
    inodes = set()
    for pid in _descendants(root):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                out.add(f"{_hex_address(address)}:{int(port, 16)}")
    return out


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def test_smoke_sweep_fractional_gpu_packing_and_file_uri(tmp_path, capsys):
    """2 seeds x 2 settings on 1 logical GPU at 0.5 each: two trials at a time; the
    embedded Ray listens on loopback only; the same name cannot start twice."""
    storage = f"file://{tmp_path}/store"
    driver = subprocess.Popen(
        [PY, "-m", "tune_selcopy.run", "attn_act", "--trials", "2", *TINY, "--local-cpus", "2", "--local-gpus", "1",
         "--gpus-per-trial", "0.5", "--storage", storage, "--name", "smoke"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: set[str] = set()
    while driver.poll() is None and not (tmp_path / "store" / "smoke" / "logs").exists():
        seen |= listening_addresses(driver.pid)  # until the trials run: GCS, raylet, workers, agents
        time.sleep(0.5)
    stdout, stderr = driver.communicate(timeout=300)
    result = subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(seen) >= 4, seen
    assert all(_is_loopback(address) for address in seen), seen
    df = read_logs(tmp_path / "store" / "smoke" / "logs")
    assert_complete(df, trials=4)
    for column in ("experiment", "space", "trial_id", "setting", "seed", "num_inputs", "attn", "qkv",
                   "attnact", "validation_sample_error%", "train_sample_error%", "learning_rate",
                   "model_params", "train_time_s", "throughput", "device", "hostname", "node_id"):
        assert column in df.columns, column
    assert set(df["attnact"]) == {"elu+1", "dpfp"} and set(df["seed"]) == {1, 2}
    assert set(df["attn"]) == {"0,0,T"} and set(df["model_params"]) == {229_632}
    assert df.groupby("trial_id")["num_inputs"].max().eq(1280).all()
    # Fractional packing: some two trials ran at the same time.
    spans = df.groupby("trial_id")["timestamp"].agg(["min", "max"]).sort_values("min").values
    assert any(b_min < a_max for (a_min, a_max), (b_min, _) in zip(spans, spans[1:]))
    assert "| attnact" in result.stdout and "All 4 trials finished." in result.stdout
    assert (tmp_path / "store" / "smoke" / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "store" / "smoke" / "intervals.png").stat().st_size > 10_000
    # The same name again: refused before Ray starts, nothing of the first sweep touched.
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "store" / "smoke").rglob("*")}
    assert run.main(["attn_act", "--trials", "2", *TINY, "--storage", storage, "--name", "smoke"]) == 2
    assert "a sweep named 'smoke' already exists" in capsys.readouterr().err
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "store" / "smoke").rglob("*")} == before


def test_crashed_trial_is_retried_without_duplicate_rows(tmp_path):
    """Each trial's process dies after writing validation 3's row, before its checkpoint:
    the retry replays validation 3 from checkpoint 2 and overwrites the same row."""
    result = sweep(
        "attn_act", "--trials", "1", *TINY, "--local-cpus", "2", "--storage", str(tmp_path), "--name", "fault",
        env={CRASH_ENV: "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    df = read_logs(tmp_path / "fault" / "logs")
    assert_complete(df, trials=2)
    # Row 3 was written twice (first attempt, then the replay): only the replay remains.
    per_trial = df.sort_values("validation_index").groupby("trial_id")["timestamp"]
    assert per_trial.apply(lambda t: t.is_monotonic_increasing).all()


def kill_after_one_trial(args: list[str], logs: Path) -> dict[Path, int]:
    """Start a sweep, SIGKILL it once one trial has finished and another is part-way;
    return the Parquet rows written by then (path -> mtime)."""
    driver = subprocess.Popen([PY, "-m", "tune_selcopy.run", *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            files = list(logs.glob("*/validation-*.parquet")) if logs.exists() else []
            if len({f.parent for f in files}) >= 2 and any(f.name == "validation-010.parquet" for f in files):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the sweep never got one trial done")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its embedded Ray, at once
        driver.wait()
    return {f: f.stat().st_mtime_ns for f in logs.glob("*/validation-*.parquet")}


def test_killed_sweep_resumes_its_saved_space_without_rerunning_finished_trials(tmp_path, capsys):
    """A YAML space swept with --set channels=32 and dilation=1,2,3 is killed part-way. The
    resume finishes it without rerunning finished trials, with the space and values it
    started with (the logged parameter counts are the 32-channel model's), though the space
    file was edited and the flags are not given again; with the file gone, the saved space
    remains."""
    space_file = tmp_path / "small.yaml"
    space_file.write_text("name: small\nseeds: 1\ngrid:\n  qkv: [QK, KV, QKV]\n")
    logs = tmp_path / "small" / "logs"
    before = kill_after_one_trial(
        [str(space_file), "--max-inputs", "640", "--val-count", "64", "--local-cpus", "2", "--max-concurrent", "1",
         "--storage", str(tmp_path), "--name", "small", "--set", "channels=32", "--set", "dilation=1,2,3"],
        logs,
    )
    finished_before = {f.parent for f in before if f.name == "validation-010.parquet"}
    assert len(before) < 30
    space_file.write_text("name: small\nseeds: 2\ngrid:\n  qkv: [QK]\nfixed: {channels: 16}\n")

    result = sweep(str(space_file), "--resume", "--storage", str(tmp_path))  # no --name: the latest sweep of small
    assert result.returncode == 0, result.stderr[-3000:]
    df = read_logs(logs)
    assert_complete(df, trials=3)
    for f in before:
        if f.parent in finished_before:  # finished trials are not rerun
            assert f.stat().st_mtime_ns == before[f]
    assert df.groupby("qkv")["model_params"].agg(set).to_dict() == {"QK": {61_568}, "KV": {61_568}, "QKV": {74_912}}
    assert set(df["channels"]) == {32} and set(df["dilation"]) == {"1,2,3"}

    space_file.unlink()
    assert run.main(["--resume", "--name", "small", "--storage", str(tmp_path), "--dry-run"]) == 0
    saved = capsys.readouterr().out
    assert "qkv=QKV" in saved and "model params    74,912  x 1 seeds" in saved
    assert "3 settings, 3 trials, 640 inputs each" in saved


def test_a_state_cut_short_resumes_from_its_intact_copy(tmp_path):
    """The driver dies while Ray rewrites its experiment state (a full disk cuts it short
    the same way): --resume puts the last intact copy in its place and finishes the sweep,
    every row once, finished trials not rerun."""
    logs = tmp_path / "cut" / "logs"
    before = kill_after_one_trial(["attn_act", "--trials", "1", *TINY, "--local-cpus", "2", "--storage", str(tmp_path),
                                   "--name", "cut"], logs)
    finished_before = {f.parent for f in before if f.name == "validation-010.parquet"}
    (state,) = (tmp_path / "cut").glob("experiment_state-*.json")
    assert (tmp_path / "cut" / sweep_folder.INTACT_STATE).exists()
    state.write_bytes(state.read_bytes()[:1000])

    result = sweep("attn_act", "--resume", "--name", "cut", "--storage", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Ray's experiment state {state.name} was damaged" in result.stdout
    assert_complete(read_logs(logs), trials=2)
    for f in before:
        if f.parent in finished_before:
            assert f.stat().st_mtime_ns == before[f]


def _wait_for_rows(logs: Path, count: int, driver: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        if logs.exists() and len(list(logs.glob("*/validation-*.parquet"))) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"the sweep never wrote {count} rows (exit code {driver.poll()})")


def test_ctrl_c_exits_130_and_says_how_to_continue(tmp_path):
    """Interrupted with 2 trials running and 2 never started (they have no config yet)."""
    args = ["attn_act", "--trials", "2", *TINY, "--local-cpus", "2", "--storage", str(tmp_path)]
    driver = subprocess.Popen([PY, "-m", "tune_selcopy.run", *args, "--name", "cc"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = tmp_path / "cc" / "logs"
    _wait_for_rows(logs, 2, driver)
    driver.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == run.INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: 4 trials unfinished; continue with: python -m tune_selcopy.run --resume "
        f"--name cc --storage {tmp_path}"
    )
    assert len(list(logs.glob("*/validation-*.parquet"))) < 20
    # Ray saved its state on the way out, so --resume can continue (resuming itself is
    # shown by the killed-sweep and full-disk tests).
    sweep_folder.check_experiment_state(sweep_folder.load_settings(str(tmp_path), "cc"))


def test_full_disk_ends_the_sweep_in_one_line_and_resumes_after_space_is_freed(tmp_path):
    """Storage on a small tmpfs that fills up mid-sweep: no futile retries, one line,
    exit 2, and what was written resumes once there is room again."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); "
                    "test_reliability.py::test_a_real_enospc_through_pyarrow_is_fatal covers the classification")
    try:
        args = ["attn_act", "--trials", "1", *TINY, "--local-cpus", "2", "--storage", str(disk)]
        driver = subprocess.Popen([PY, "-m", "tune_selcopy.run", *args, "--name", "full"], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        logs = disk / "full" / "logs"
        _wait_for_rows(logs, 1, driver)
        # What a resume needs: Ray's state, and the intact copy that survives a state file
        # cut short by the full disk (it is taken within seconds of the first state).
        deadline = time.monotonic() + 60
        while not (disk / "full" / sweep_folder.INTACT_STATE).exists():
            assert time.monotonic() < deadline and driver.poll() is None, "no intact copy of Ray's state"
            time.sleep(0.2)
        filler = disk / "filler"
        # suppress outermost: closing the filler flushes its last buffer into a full disk
        with contextlib.suppress(OSError), open("/dev/zero", "rb") as zeros, open(filler, "wb") as out:
            shutil.copyfileobj(zeros, out)  # take every byte that is left
        assert shutil.disk_usage(disk).free < 2**20
        filled = time.monotonic()
        stdout, stderr = driver.communicate(timeout=180)
        assert driver.returncode == 2, stderr[-3000:]
        assert time.monotonic() - filled < 90  # it was 232 s with three futile retries per trial
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0], stderr[-3000:]
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1].endswith(f"--resume --name full --storage {disk}")
        assert stdout.count("failed (failure") <= 2  # no retries: at most one failure line per running trial

        filler.unlink()
        result = sweep("attn_act", "--resume", "--name", "full", "--storage", str(disk))
        assert result.returncode == 0, result.stderr[-3000:]
        assert_complete(read_logs(logs), trials=2)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit(tmp_path):
    """A head started by `ray start`, a job submitted with token auth as a user would."""
    ray_bin = str(Path(PY).parent / "ray")
    port, dash, *agent_ports = (_free_port() for _ in range(6))
    # A short temp dir: Ray's Unix socket paths under pytest's long tmp_path exceed 107 chars.
    temp_dir = tempfile.mkdtemp(prefix="ray-job-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{Path(PY).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [ray_bin, "start", "--head", f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=2", "--num-gpus=1",
         # Every port free: another Ray on the machine holds the default agent ports.
         *(f"--{flag}={p}" for flag, p in zip(
             ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
              "runtime-env-agent-port"), agent_ports)),
         "--include-dashboard=true", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        check=True, env=env, capture_output=True, timeout=120,
    )
    try:
        submit = [ray_bin, "job", "submit", f"--address=http://127.0.0.1:{dash}", "--",
                  "python", "-m", "tune_selcopy.run", "attn_act", "--trials", "1", *TINY,
                  "--gpus-per-trial", "0.5", "--logical-gpus", "--storage", str(tmp_path / "store"), "--name", "job"]
        for _ in range(15):  # the head's job agent needs a few seconds after `ray start`
            job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
            if "No available agent to submit job" not in job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
        assert "joined Ray cluster" in job.stdout
        assert_complete(read_logs(tmp_path / "store" / "job" / "logs"), trials=2)
    finally:
        # Stop only this head (`ray stop` would stop every Ray on the machine): its
        # processes all carry the temp dir on their command line.
        subprocess.run(["pkill", "-9", "-f", temp_dir], timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_joined_cluster_infeasible_requests_then_trials_spread_over_two_nodes(tmp_path, capsys):
    """``--address`` to a ``ray.cluster_utils.Cluster``: a request no node can hold fails
    fast (a joined cluster's resources are known only once joined; Ray would wait
    forever), waiting for nodes needs an explicit GPU share, and once two GPU nodes have
    joined the trials spread over both and never land on the GPU-less head."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    try:
        started = time.monotonic()
        code = run.main(["attn_act", "--trials", "1", *TINY, "--address", cluster.address,
                         "--gpus-per-trial", "1", "--storage", str(tmp_path), "--name", "infeasible"])
        assert code == 2 and time.monotonic() - started < 60
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
            "error: no node can run a trial asking CPU 1, GPU 1: the nodes have CPU 2, GPU 0; lower"
        )
        assert list(tmp_path.iterdir()) == []  # the name was released
        # Waiting for nodes on a cluster without GPUs yet: the GPU share must be said.
        ray.shutdown()  # main() leaves its driver connected, as a CLI process would until exit
        assert run.main(["attn_act", "--trials", "1", *TINY, "--address", cluster.address,
                         "--wait-for-nodes", "5", "--storage", str(tmp_path)]) == 2
        assert "the cluster has no GPU yet" in capsys.readouterr().err

        ray.shutdown()
        workers = {cluster.add_node(num_cpus=2, num_gpus=1).node_id for _ in range(2)}
        code = run.main(["attn_act", "--trials", "2", *TINY, "--address", cluster.address,
                         "--gpus-per-trial", "1", "--logical-gpus", "--storage", str(tmp_path), "--name", "multi"])
        assert code == 0
        df = read_logs(tmp_path / "multi" / "logs")
        assert_complete(df, trials=4)
        assert set(df["node_id"]) == workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_resume_without_a_sweep_is_an_error(tmp_path):
    result = sweep("attn_act", "--resume", "--storage", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: nothing to resume")


def test_a_diverged_trial_ends_in_one_line_without_retries_and_stays_ended(tmp_path):
    """lr 1e30: the loss turns NaN at the first validation. The trial ends there, its row
    saying so, is not retried (a retry would restore a checkpoint that diverged again), and
    the sweep exits 1 with one line per trial; --resume finds nothing to do."""
    args = ["attn_act", "--trials", "1", "--set", "lr=1e30", "--max-inputs", "640", "--val-count", "20",
            "--local-cpus", "2", "--storage", str(tmp_path), "--name", "nan"]
    result = sweep(*args)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "2 trials, 0 finished, 0 errored, 2 diverged, 0 unfinished" in result.stdout
    diverged = [line for line in lines if line.startswith("  diverged: ")]
    assert len(diverged) == 2 and all("the loss turned NaN or infinite at validation 1" in line for line in diverged)
    assert "retrying" not in result.stdout and "Traceback" not in result.stdout + result.stderr
    # the table at the end says what happened, not "no finished trials yet"
    assert "attnact: every trial diverged (2 trials: the loss turned NaN or infinite)." in result.stdout
    df = read_logs(tmp_path / "nan" / "logs")
    assert len(df) == 2 and df["diverged"].all()
    again = sweep("--resume", "--name", "nan", "--storage", str(tmp_path))
    assert again.returncode == 1 and "2 diverged" in again.stdout
    assert len(read_logs(tmp_path / "nan" / "logs")) == 2
