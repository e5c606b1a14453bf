"""Autoscaling from zero GPU workers, for real, on autoscaler v2 and Ray's own fake
multi-node provider.

`ray up` starts the head's autoscaler as v2 since Ray 2.50 (``RAY_UP_enable_autoscaler_v2``
defaults to 1), so that is the one these tests run. The provider (``FakeMultiNodeProvider``)
is the one Ray's autoscaler tests use: the autoscaler on the head launches each "node" as a
separate set of Ray processes (raylet, agents) on this machine, registered under the node type
it chose. The config is the shipped cluster/aws-gpu.yaml as `ray up` prepares it (Ray's
``prepare_config``), and the sweep is submitted with the README's own ``ray job submit``
command, so these tests follow the shipped config and docs. What is rewritten for the fake
provider is listed in ``REWRITES``, each with its reason; everything else (node types,
resources, min/max workers, upscaling speed, Docker settings, commands) stays as shipped,
and the node types' Docker settings and commands are what tests/test_cluster_launch.py
checks, since this provider never runs them.

``ray.cluster_utils.AutoscalingCluster(..., autoscaler_v2=True)`` shows what v2 needs of the
provider (``launch_multiple``, ``head_node_id``) and of the head (the env in ``V2_HEAD_ENV``),
but it cannot be used here: its start/shutdown run ``ray stop --force`` (which would stop every
Ray on the machine, a CI runner's other jobs included), and the defaults file it reads (fake_multi_node/example.yaml) is not
in the ray 2.60 wheel. So the head is started the way it does it, with free ports, a private
temp dir, token auth, and stopped by process group.

A killed worker (a spot reclaim): Ray's fake provider keeps listing a node whose processes
died until the autoscaler terminates it. Autoscaler v1 could bin-pack new demand onto such a
node and never replace it (a CI hang, when these tests ran v1; the harness then had to report
dead nodes terminated). Autoscaler v2 marks the instance stopped once Ray's GCS sees the node
dead, terminates it and launches a replacement: ``test_a_killed_worker_with_free_resources_is_replaced``
runs that ordering on Ray's own provider.

Storage: a multi-node sweep needs storage every node can reach (a bucket on a cloud). Here every
"node" is a process on this machine, so a local folder is reachable by all.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID, FAKE_HEAD_NODE_TYPE
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.v2.instance_manager.config import FileConfigReader

from cluster_files import ROOT, entrypoint, job_submissions, load, readme_commands, with_values, without

PY = sys.executable
LAUNCHER_CONFIG = "aws-gpu.yaml"
TINY = ["--max-inputs", "2000", "--val-count", "200"]
# Every fake node's GPU is declared for testing (no CUDA here): without --logical-gpus a trial
# holding a share of it stops the sweep instead of training on CPU.
RUN_FLAGS_FOR_CPU_ONLY_NODES: list[str] = ["--logical-gpus"]
VALIDATIONS = 10  # rows per finished trial at these sizes
# The config's 5-minute idle timeout, shortened so a test sees the scale-down. Not much
# shorter: a raylet counts idle time from its start, and on a loaded machine a new
# worker can take seconds to register and get its first trial.
IDLE_TIMEOUT_MINUTES = 10 / 60
PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
# What `ray up` sets on the head's `ray start` for v2 (commands.py), plus the node id the fake
# provider knows its head by (RAY_OVERRIDE_NODE_ID_FOR_TESTING, as AutoscalingCluster sets it).
V2_HEAD_ENV = {"RAY_enable_autoscaler_v2": "1", "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
               "RAY_NODE_TYPE_NAME": FAKE_HEAD_NODE_TYPE, "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID}
# Each field of the prepared launcher config that the fake cluster changes, and why.
REWRITES: dict[str, str] = {
    "provider": "Ray's fake multi-node provider on this head's GCS instead of a cloud; with "
                "launch_multiple and head_node_id as autoscaler v2 needs them, and node updaters off: "
                "its nodes are local processes, there is nothing to SSH into or set up",
    "head_node_type": f"renamed to {FAKE_HEAD_NODE_TYPE}, the type the fake provider registers its head under",
    "idle_timeout_minutes": "5 minutes shortened to 10 s, to see the scale-down within a test",
}
# On autoscaler v1 (`RAY_UP_enable_autoscaler_v2=0 ray up`), also:
REWRITES_V1 = {
    **REWRITES,
    "file_mounts": "emptied: v1's monitor hashes the folders named there, which on a real head are its "
                   "copies of the checkout and the token folder; this machine has neither at those paths",
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_provider_config(launcher: dict, gcs_address: str, autoscaler: str = "v2") -> dict:
    """The launcher config as `ray up` prepares it, with only ``REWRITES`` (v1: ``REWRITES_V1``) applied."""
    cfg = prepare_config(copy.deepcopy(launcher))
    if autoscaler == "v1":
        cfg["file_mounts"] = {}
    types = cfg["available_node_types"]
    types[FAKE_HEAD_NODE_TYPE] = types.pop(cfg["head_node_type"])
    cfg["head_node_type"] = FAKE_HEAD_NODE_TYPE
    cfg["idle_timeout_minutes"] = IDLE_TIMEOUT_MINUTES
    cfg["provider"] = {
        "type": "external", "module": PROVIDER,
        "gcs_address": gcs_address,  # workers join this head, not the provider's default 6379 (another Ray's)
        "launch_multiple": True, "head_node_id": FAKE_HEAD_NODE_ID,
        "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True,
    }
    return cfg


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) for every process on this machine."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def _with_descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> set[int]:
    tree, grew = set(roots), True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile
        return []


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class FakeAutoscalingCluster:
    """A head with the autoscaler on the fake provider; GPU workers come and go."""

    def __init__(self, launcher: dict, autoscaler: str = "v2"):
        self.launcher, self.autoscaler = launcher, autoscaler
        # Short: Ray's socket paths under it must stay below 107 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="asc-", dir="/tmp")
        # The token lives in a folder, as the launcher configs mount it on every node.
        token = Path(self.temp_dir, "auth", "auth_token")
        token.parent.mkdir()
        token.write_text(os.urandom(16).hex())
        self.token = token.read_text()
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "PATH": f"{Path(PY).parent}:{os.environ['PATH']}"}
        self.env.pop("RAY_ADDRESS", None)
        import ray._private.services

        self.gcs_port, self.dashboard_port, client_port, *agent_ports = (free_port() for _ in range(7))
        config = Path(self.temp_dir, "autoscaling.json")
        gcs = f"{ray._private.services.get_node_ip_address()}:{self.gcs_port}"
        config.write_text(json.dumps(fake_provider_config(launcher, gcs, autoscaler)))
        # Read it as the head's monitor will: a config it cannot read kills the monitor, and
        # a sweep would then wait for workers that never come.
        if autoscaler == "v2":
            FileConfigReader(str(config), skip_content_hash=True)
        else:
            validate_config(prepare_config(json.loads(config.read_text())))
        head = launcher["available_node_types"][launcher["head_node_type"]]["resources"]
        start = subprocess.Popen(
            [str(Path(PY).parent / "ray"), "start", "--head", f"--port={self.gcs_port}",
             f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={client_port}",
             *(f"--{flag}={p}" for flag, p in zip(
                 ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                  "runtime-env-agent-port"), agent_ports)),
             f"--num-cpus={head['CPU']}", f"--num-gpus={head.get('GPU', 0)}",
             f"--autoscaling-config={config}", "--include-dashboard=true", "--disable-usage-stats",
             f"--temp-dir={self.temp_dir}"],
            env={**self.env, **(V2_HEAD_ENV if autoscaler == "v2" else {}), "RAY_FAKE_CLUSTER": "1",
                 "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        # Every daemon `ray start` spawns, and every worker node the autoscaler adds, stays
        # in this process group: the cluster is stopped through it, never by `ray stop`.
        self.pgid = start.pid
        output, _ = start.communicate(timeout=180)
        if start.returncode != 0:
            self.shutdown()
            raise RuntimeError(f"ray start failed:\n{output}")

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def nodes(self) -> list[dict]:
        """Ray's node table (the dashboard's state API, with the token)."""
        request = urllib.request.Request(f"{self.address}/api/v0/nodes?limit=1000",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["data"]["result"]["result"]

    def _pids(self, table: dict[int, tuple[int, int]]) -> set[int]:
        """This cluster's processes: the `ray start` process group and, since Ray's workers
        and the job driver start groups of their own, everything under it."""
        return _with_descendants({pid for pid, (_, group) in table.items() if group == self.pgid}, table)

    def kill_node(self, node_id: str) -> None:
        """Kill one node's raylet and everything under it at once, as if its machine vanished."""
        table = _processes()
        flag = f"--node_id={node_id}".encode()
        (raylet,) = [pid for pid in self._pids(table) if flag in _cmdline(pid)]
        _kill(_with_descendants({raylet}, table))

    def log_tails(self, lines: int = 60) -> str:
        """The end of the autoscaler's logs, to show why a node did or did not come."""
        logs = Path(self.temp_dir, "session_latest", "logs")
        parts = []
        for name in ("monitor.log", "monitor.err", "monitor.out"):
            try:
                text = (logs / name).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts)

    def shutdown(self) -> None:
        _kill(self._pids(_processes()))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class NodeTimeline(threading.Thread):
    """Samples the node table twice a second: which worker nodes are alive, and when."""

    def __init__(self, cluster: FakeAutoscalingCluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.started = time.monotonic()
        self.samples: list[tuple[float, frozenset[str]]] = []
        self.events: list[tuple[float, str]] = []  # what the test did, and when
        self.seen: dict[str, dict] = {}  # node id -> its last row in the node table
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                nodes = self.cluster.nodes()
            except OSError:  # the dashboard is slow on a loaded machine: next sample
                nodes = None
            if nodes is not None:
                self.seen.update((n["node_id"], n) for n in nodes)
                alive = frozenset(n["node_id"] for n in nodes if n["state"] == "ALIVE" and not n["is_head_node"])
                self.samples.append((self.now(), alive))
            self._done.wait(0.5)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, event: str) -> float:
        self.events.append((self.now(), event))
        return self.events[-1][0]

    def clock(self, wall_time: float) -> float:
        """A wall-clock time (as in the logs' timestamp column) on this timeline's clock."""
        return wall_time - (time.time() - self.now())

    def note_rows(self, df: pd.DataFrame) -> None:
        """Add to the events when each worker's trials wrote their first and last rows."""
        for node, rows in df.groupby("node_id"):
            trials = rows["trial_id"].nunique()
            self.events.append((self.clock(rows["timestamp"].min()), f"{node[-5:]}: first row ({trials} trials)"))
            self.events.append((self.clock(rows["timestamp"].max()), f"{node[-5:]}: last row"))

    def first_alive(self, node: str) -> float:
        return min(t for t, alive in self.samples if node in alive)

    def removed(self, node: str) -> float:
        """When ``node`` was last seen going from alive to gone."""
        return max(t for (_, before), (t, alive) in zip(self.samples, self.samples[1:])
                   if node in before and node not in alive)

    def workers(self) -> frozenset[str]:
        """Every worker node seen alive so far."""
        return frozenset().union(*(alive for _, alive in self.samples))

    def wait_for(self, condition, timeout: float, what: str) -> float:
        """Wait until ``condition(alive worker ids)`` holds on a new sample; return its time."""
        deadline = time.monotonic() + timeout
        seen = len(self.samples)
        while time.monotonic() < deadline:
            for t, alive in self.samples[seen:]:
                if condition(alive):
                    return t
            seen = len(self.samples)
            time.sleep(0.2)
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{self}")

    def __str__(self) -> str:
        """One line per change (time, alive workers, who came or went) and per event."""
        lines, before = [], None
        for t, alive in self.samples:
            if alive != before:
                came = " ".join(f"+{n[-5:]}" for n in sorted(alive - (before or set())))
                went = " ".join(f"-{n[-5:]}" for n in sorted((before or set()) - alive))
                lines.append((t, f"workers {len(alive)}  {came} {went}".rstrip()))
                before = alive
        return "\n".join(f"  {t:6.1f} s  {text}" for t, text in sorted(lines + self.events))


def readme_sweep(cluster: FakeAutoscalingCluster, space: str, name: str, storage: Path,
                 *extra: str) -> tuple[list[str], dict[str, str]]:
    """The README's `ray job submit` command, aimed at this cluster, for a tiny sweep.

    Kept as written: the options (--gpus-per-trial 0.25 --cpus-per-trial 1: four trials per
    GPU worker, --wait-for-nodes), `RAY_AUTH_MODE=token`, `RAY_ADDRESS` (here this head's
    job server instead of the SSH tunnel). Changed: the space and sizes (tiny trials),
    storage (a local folder all fake nodes reach), the submission id, and no
    `--working-dir .`: all fake nodes share one disk, so each joining node's runtime-env
    agent re-unpacks the same upload folder and deletes it under the running driver (its
    cwd vanishes). The code reaches every node through the editable install instead, as
    `ray up`'s setup commands put it there; the upload itself is tested in test_cluster.py.
    """
    (submit,) = job_submissions(readme_commands())
    job = without(with_values(submit.argv, {"--submission-id": name}), "--working-dir")
    run = with_values(entrypoint(submit), {"--storage": str(storage), "--name": name})
    run[3] = space
    argv = [*job[: job.index("--") + 1], *run, *TINY, *RUN_FLAGS_FOR_CPU_ONLY_NODES, *extra]
    argv[0] = str(Path(PY).parent / "ray")
    return argv, {**cluster.env, **submit.env, "RAY_ADDRESS": cluster.address}


def read_rows(logs: Path) -> pd.DataFrame:
    return pd.read_parquet(logs) if logs.exists() and any(logs.glob("*/*.parquet")) else pd.DataFrame()


def assert_one_row_per_validation(df: pd.DataFrame, trials: int) -> None:
    assert df["trial_id"].nunique() == trials
    assert not df.duplicated(["trial_id", "validation_index"]).any()
    assert sorted(df["validation_index"]) == sorted(list(range(1, VALIDATIONS + 1)) * trials)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals [start, end] that are open at one time."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak



@pytest.fixture(scope="module")
def cluster():
    fake = FakeAutoscalingCluster(load(LAUNCHER_CONFIG))
    try:
        yield fake
    finally:
        fake.shutdown()


@contextlib.contextmanager
def watching(cluster: FakeAutoscalingCluster):
    """A node timeline of ``cluster``, from no GPU worker on; printed at the end."""
    watch = NodeTimeline(cluster)
    watch.start()
    try:
        watch.wait_for(lambda alive: not alive, 60, "no GPU worker")
        yield watch
    finally:
        watch.stop()
        print(f"\nworker timeline, autoscaler {cluster.autoscaler} (seconds from the test's start):\n{watch}")


@pytest.fixture
def timeline(cluster):
    with watching(cluster) as watch:
        yield watch


def _worker_types(name: str) -> dict:
    cfg = load(name)
    return {k: {f: nt[f] for f in ("resources", "min_workers", "max_workers")}
            for k, nt in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def test_gcp_worker_types_are_the_ones_run_here():
    """The runs below use aws-gpu.yaml's node types; GCP's give the autoscaler the same
    numbers (resources, min and max workers), so they cover gcp-gpu.yaml too."""
    (aws,) = _worker_types("aws-gpu.yaml").values()
    (gcp,) = _worker_types("gcp-gpu.yaml").values()
    assert aws == gcp


def test_the_fake_cluster_keeps_the_shipped_config_but_the_rewrites():
    """Only the fields in REWRITES differ from the config `ray up` prepares from the file."""
    launcher = load(LAUNCHER_CONFIG)
    prepared, fake = prepare_config(copy.deepcopy(launcher)), fake_provider_config(launcher, "127.0.0.1:1")
    assert {k for k in prepared.keys() | fake.keys() if prepared.get(k) != fake.get(k)} == \
        set(REWRITES) | {"available_node_types"}
    head = launcher["head_node_type"]
    assert fake["available_node_types"] == {
        (FAKE_HEAD_NODE_TYPE if name == head else name): node_type
        for name, node_type in prepared["available_node_types"].items()}


def test_gpu_workers_scale_from_zero_pack_trials_and_scale_back(cluster, timeline, tmp_path):
    """The README's sweep with --gpus-per-trial 0.25: 6 trials on 1-GPU workers that hold 4
    each, so autoscaler v2 adds 2 workers, packs 4 trials on one, and removes both once idle."""
    scale_from_zero_and_back(cluster, timeline, tmp_path)


def scale_from_zero_and_back(cluster: FakeAutoscalingCluster, timeline: NodeTimeline, tmp_path: Path) -> None:
    launcher = cluster.launcher
    (gpu_type,) = [nt for name, nt in launcher["available_node_types"].items() if name != launcher["head_node_type"]]
    head = next(n for n in cluster.nodes() if n["is_head_node"])
    assert head["resources_total"].get("GPU", 0) == 0  # trials can only run on GPU workers
    assert not timeline.workers()  # min_workers 0: no GPU worker until a sweep asks

    # 2 settings x 3 seeds at a quarter of a GPU each.
    argv, env = readme_sweep(cluster, "attn_act", "scale", tmp_path, "--trials", "3")
    timeline.mark("job submitted")
    try:
        job = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    except subprocess.TimeoutExpired as stuck:
        pytest.fail(f"the sweep did not finish within 600 s\n{timeline}\n--- job output\n"
                    f"{(stuck.stdout or b'').decode(errors='replace')[-4000:]}\n{cluster.log_tails()}")
    timeline.mark("job done")
    assert job.returncode == 0, f"{(job.stdout + job.stderr)[-4000:]}\n{timeline}\n{cluster.log_tails()}"
    assert "joined Ray cluster" in job.stdout

    workers = timeline.workers()
    assert len(workers) >= 2, f"expected the autoscaler to add 2 GPU workers\n{timeline}"
    for node in workers:  # each one is the config's GPU node type, as the autoscaler made it
        resources = timeline.seen[node]["resources_total"]
        assert {k: resources.get(k) for k in ("CPU", "GPU")} == gpu_type["resources"]
    assert len(workers) <= gpu_type["max_workers"]

    df = read_rows(tmp_path / "scale" / "logs")
    timeline.note_rows(df)
    assert_one_row_per_validation(df, trials=6)
    timeline.mark(f"rows: {len(df)}, each (trial, validation) once")
    assert set(df["node_id"]) <= workers  # every trial ran on a worker, none on the head
    assert head["node_id"] not in set(df["node_id"])
    # Packing: on a 1-GPU worker, trials at 0.25 GPU ran four at a time, never more.
    spans = df.groupby(["node_id", "trial_id"])["timestamp"].agg(["min", "max"])
    per_node = {node: max_overlap(list(map(tuple, group.values))) for node, group in spans.groupby(level=0)}
    assert max(per_node.values()) == 4 and all(peak <= 4 for peak in per_node.values()), (per_node, str(timeline))

    timeline.wait_for(lambda alive: not alive, 180, "the idle GPU workers to be removed")
    # A worker that ran trials went once idle for the timeout: not before its last row.
    # (One that never got a trial can go sooner after it shows up: its raylet counts
    # idle time from its own start, before it registers.)
    for node, rows in df.groupby("node_id"):
        idle_since = timeline.clock(rows["timestamp"].max())
        assert timeline.removed(node) - idle_since >= IDLE_TIMEOUT_MINUTES * 60 - 1, str(timeline)


def test_lost_worker_trials_resume_on_a_new_worker(cluster, timeline, tmp_path):
    """A GPU worker dies mid-sweep (raylet and trials killed at once, like a spot
    reclaim): its trials resume from their checkpoints on a worker the autoscaler adds."""
    # 2 trials at a quarter of a GPU: both on the one worker the autoscaler adds first. Four
    # times the tiny size: the worker must die while both trials still have validations to
    # go (at 2,000 inputs one once finished before the kill, on a loaded machine).
    argv, env = readme_sweep(cluster, "attn_act", "loss", tmp_path, "--trials", "1", "--max-inputs", "8000")
    logs = tmp_path / "loss" / "logs"
    with open(tmp_path / "job.log", "w") as out:
        timeline.mark("job submitted")
        job = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 300
            while (rows := read_rows(logs)).empty or rows["trial_id"].nunique() < 2 or \
                    rows.groupby("trial_id").size().min() < 2:  # a checkpoint or two each
                assert job.poll() is None and time.monotonic() < deadline, "no progress to interrupt"
                time.sleep(0.3)
            nodes = set(rows["node_id"])
            assert len(nodes) == 1, f"both trials should share the one worker asked for: {nodes}"
            assert rows.groupby("trial_id").size().max() < VALIDATIONS, "a trial finished before the loss"
            (victim,) = nodes
            killed_at = timeline.mark(f"worker {victim[-5:]} killed")
            cluster.kill_node(victim)
            try:
                code = job.wait(timeout=300)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the sweep did not finish within 300 s of the loss\n{timeline}\n"
                            f"--- job log\n{(tmp_path / 'job.log').read_text()[-4000:]}\n{cluster.log_tails()}")
            timeline.mark("job done")
        finally:
            if job.poll() is None:
                job.kill()
    assert code == 0, (tmp_path / "job.log").read_text()[-4000:]

    df = read_rows(logs)
    timeline.note_rows(df)
    assert_one_row_per_validation(df, trials=2)
    replacements = set(df["node_id"]) - {victim}
    assert replacements and replacements <= timeline.workers()
    for trial_id, trial in df.sort_values("validation_index").groupby("trial_id"):
        # Validation 1 was not redone: the trial went on from a checkpoint, not from scratch.
        assert trial["node_id"].iloc[0] == victim, trial_id
        assert trial["node_id"].iloc[-1] in replacements, trial_id
    # The victim is gone and its replacement is a worker the autoscaler added after the loss.
    timeline.wait_for(lambda alive: victim not in alive, 120, "the lost worker to leave the node table")
    assert all(timeline.first_alive(node) > killed_at for node in replacements), str(timeline)


PLACEMENT_DRIVER = """
import sys
import ray
from ray.util.placement_group import placement_group, remove_placement_group

ray.init(address=sys.argv[1], log_to_driver=False)
bundle = [{"CPU": 1, "GPU": 0.25}]  # one trial at --gpus-per-trial 0.25
pg = placement_group(bundle)
ray.get(pg.ready(), timeout=120)
(node,) = ray.util.placement_group_table(pg)["bundles_to_node_id"].values()
remove_placement_group(pg)  # the trial is gone: its worker reports free resources
print("placed on", node, flush=True)
sys.stdin.readline()  # the test has killed that worker
ray.get(placement_group(bundle).ready(), timeout=120)
print("placed again", flush=True)
"""


class Lines(threading.Thread):
    """A subprocess's output lines, read as they come (a silent process blocks no one)."""

    def __init__(self, process: subprocess.Popen):
        super().__init__(daemon=True)
        self.process, self.lines, self.queue = process, [], queue.Queue()
        self.start()

    def run(self) -> None:
        for line in self.process.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)  # end of output

    def expect(self, text: str, timeout: float) -> str:
        """The first new line that starts with ``text``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(text):
                return line
        pytest.fail(f"no {text!r} within {timeout:g} s; output:\n" + "\n".join(self.lines[-40:]))


def test_a_killed_worker_with_free_resources_is_replaced(cluster, timeline):
    """The ordering behind a CI hang of the test above when it ran autoscaler v1: a worker's
    trials have just given back their resources when it dies, and new ones are asked for
    before Ray marks it dead, while the fake provider still lists the dead node. v1 packed
    the request onto that node and never replaced it (the group still pending after 120 s).
    v2 stops and terminates the instance once Ray sees the node dead, and launches a
    replacement."""
    driver = subprocess.Popen([PY, "-c", PLACEMENT_DRIVER, f"127.0.0.1:{cluster.gcs_port}"], env=cluster.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Lines(driver)
    try:
        victim = output.expect("placed on ", 180).split()[-1]
        timeline.wait_for(lambda alive: victim in alive, 60, "the worker the group was placed on")
        time.sleep(3)  # Ray's resource reports now show the worker idle
        killed_at = timeline.mark(f"worker {victim[-5:]} killed")
        cluster.kill_node(victim)
        driver.stdin.write("go\n")
        driver.stdin.flush()
        output.expect("placed again", 150)
        timeline.mark("placed again")
    finally:
        driver.kill()
        driver.wait()
    # A worker the autoscaler added after the loss (one left idle by an earlier test may
    # still be leaving).
    timeline.wait_for(lambda alive: any(timeline.first_alive(node) > killed_at for node in alive), 60,
                      "the replacement in the node table")


# A benchmark (pytest -m benchmark): 40-70 s for the one live check of autoscaler v1, which
# `ray up` runs only with RAY_UP_enable_autoscaler_v2=0; the suite stays under its time budget.
@pytest.mark.benchmark
def test_autoscaler_v1_runs_the_same_sweep_from_zero_and_back(tmp_path):
    """The same on autoscaler v1 (`RAY_UP_enable_autoscaler_v2=0 ray up`, and Ray before 2.50):
    the run command's --wait-for-nodes asks v1 for a node through its own request path."""
    v1 = FakeAutoscalingCluster(load(LAUNCHER_CONFIG), autoscaler="v1")
    try:
        with watching(v1) as timeline:
            scale_from_zero_and_back(v1, timeline, tmp_path)
    finally:
        v1.shutdown()
