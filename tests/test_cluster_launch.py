"""What `ray up` and the autoscalers run on each machine of the launcher configs, offline.

`ray up` sets up the head node itself; the head's autoscaler then sets up every GPU worker
it launches: autoscaler v2 (what `ray up` starts since Ray 2.50: `RAY_UP_enable_autoscaler_v2`
defaults to 1) through ``RayInstaller.install_ray``, v1 (``RAY_UP_enable_autoscaler_v2=0``)
through ``StandardAutoscaler``'s node updaters. Both read the config `ray up` wrote to the
head (``~/ray_bootstrap_config.yaml``). These tests run that code, Ray's own, on the shipped
YAMLs as they are, with fake_cloud's machines and shell, and check what each machine would
run: the image each container starts from, the run options, the initialization, setup and
start commands in order, and that a failing setup command fails the node.

Differences from a real `ray up`, none of which touches Docker or the commands:
- the cloud's own bootstrap step (``bootstrap_config``: on AWS the key pair, subnets, security
  group and the head's instance profile; on GCP the SSH key and service account) is skipped: it
  needs the cloud, and it fills in ``node_config`` and ``auth.ssh_private_key`` only;
- the head's config names the head's own folders as ``file_mounts`` sources (``/home/ray/...``,
  which its container bind-mounts from the Docker host); here they are the fake head's copies;
- v1's ``StandardAutoscaler`` takes no provider argument, so its provider lookup is patched to
  return the fake machines (as Ray's own autoscaler tests do).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray.autoscaler._private import commands
from ray.autoscaler._private.autoscaler import StandardAutoscaler
from ray.autoscaler._private.load_metrics import LoadMetrics
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.sdk import get_docker_host_mount_location
from ray.autoscaler.tags import (
    NODE_KIND_HEAD, NODE_KIND_WORKER, STATUS_UP_TO_DATE, STATUS_UPDATE_FAILED, TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_STATUS, TAG_RAY_USER_NODE_TYPE,
)
from ray.autoscaler.v2.instance_manager.config import FileConfigReader
from ray.autoscaler.v2.instance_manager.ray_installer import RayInstaller
from ray.core.generated.instance_manager_pb2 import Instance

from cluster_files import ROOT, load
from fake_cloud import CONTAINER_HOME, Machines, Shell, Step

LAUNCHER_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
REMOTE_PROJECT = "/home/ray/tune_selcopy"
HEAD_CONFIG = "ray_bootstrap_config.yaml"  # what `ray up` puts in the head's home
# One trial's bundle at the README's --gpus-per-trial 0.25 --cpus-per-trial 1: what the run
# command's --wait-for-nodes asks the autoscaler for (request_resources).
TRIAL_BUNDLE = {"CPU": 1, "GPU": 0.25}


@dataclass
class Cluster:
    """A launched head: its config as `ray up` prepared it, the machines, what ran."""

    config: dict
    machines: Machines
    shell: Shell
    head: str  # node id

    @property
    def head_ip(self) -> str:
        return self.machines.internal_ip(self.head)

    @property
    def gpu_type(self) -> str:
        (name,) = [t for t, nt in self.config["available_node_types"].items() if nt.get("resources", {}).get("GPU")]
        return name

    def head_config_file(self, folder: Path) -> Path:
        """The config the head's autoscaler reads, as `ray up` wrote it to the head, its
        file_mounts sources mapped to the fake head's copies of those folders."""
        mounts = self.shell.machine_folder(self.machines.external_ip(self.head)) / \
            get_docker_host_mount_location(self.config["cluster_name"]).lstrip("/")
        (written,) = mounts.rglob(HEAD_CONFIG)
        config = json.loads(written.read_text())
        sources = {remote: mounts / remote.lstrip("/") for remote in config["file_mounts"]}
        assert all(path.is_dir() for path in sources.values()), sources  # ray up synced them there
        config["file_mounts"] = {remote: str(path) for remote, path in sources.items()}
        path = folder / HEAD_CONFIG
        path.write_text(json.dumps(config))
        return path


def ray_up(name: str, tmp_path: Path, monkeypatch, run_here=lambda _: None) -> Cluster:
    """`ray up cluster/NAME --yes` from the repository root, after the README's one-time setup
    (the token folder), up to where the cloud is asked for machines."""
    home = tmp_path / "home"
    (home / ".ray" / "tune-selcopy").mkdir(parents=True, mode=0o700)
    (home / ".ray" / "tune-selcopy" / "auth_token").write_text("token")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(ROOT)  # file_mounts' "." is where `ray up` runs
    config = prepare_config(load(name))  # create_or_update_cluster's steps before the cloud's
    validate_config(config)
    machines = Machines(config["provider"], config["cluster_name"])
    shell = Shell(tmp_path / "machines", run_here)
    commands.get_or_create_head_node(config, printable_config_file=f"cluster/{name}", no_restart=False,
                                     restart_only=False, yes=True, override_cluster_name=None,
                                     _provider=machines, _runner=shell)
    (head,) = machines.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_HEAD})
    assert machines.node_tags(head)[TAG_RAY_NODE_STATUS] == STATUS_UP_TO_DATE
    return Cluster(config, machines, shell, head)


def install_v2(cluster: Cluster, folder: Path) -> str:
    """Autoscaler v2 launches a GPU worker: its config reader and RayInstaller, as the head's
    monitor builds them; returns the worker's IP. Raises what ``install_ray`` raises."""
    config = FileConfigReader(str(cluster.head_config_file(folder)), skip_content_hash=True).get_cached_autoscaling_config()
    cluster.machines.create_node(config.get_cloud_node_config(cluster.gpu_type),
                                 {TAG_RAY_NODE_KIND: NODE_KIND_WORKER, TAG_RAY_USER_NODE_TYPE: cluster.gpu_type}, 1)
    worker = list(cluster.machines.tags)[-1]
    instance = Instance(instance_id="im-1", cloud_instance_id=worker, instance_type=cluster.gpu_type)
    RayInstaller(cluster.machines, config, process_runner=cluster.shell).install_ray(instance, cluster.head_ip)
    return cluster.machines.internal_ip(worker)


def install_v1(cluster: Cluster, folder: Path, monkeypatch, timeout: float = 120) -> str:
    """Autoscaler v1 asked for one trial's bundle (as --wait-for-nodes does) launches a GPU
    worker and its node updater sets it up; returns the worker's IP once the updater is done."""
    head_config = json.loads(cluster.head_config_file(folder).read_text())
    monkeypatch.setattr("ray.autoscaler._private.autoscaler._get_node_provider", lambda *_: cluster.machines)
    demand = LoadMetrics()
    autoscaler = StandardAutoscaler(lambda: copy.deepcopy(head_config), demand, gcs_client=None,
                                    process_runner=cluster.shell, update_interval_s=0)
    demand.set_resource_requests([TRIAL_BUNDLE])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        autoscaler.update()
        workers = cluster.machines.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
        done = [w for w in workers if cluster.machines.node_tags(w).get(TAG_RAY_NODE_STATUS)
                in (STATUS_UP_TO_DATE, STATUS_UPDATE_FAILED)]
        if done:
            (worker,) = done
            assert cluster.machines.node_tags(worker)[TAG_RAY_USER_NODE_TYPE] == cluster.gpu_type
            return cluster.machines.internal_ip(worker)
        time.sleep(0.2)
    pytest.fail(f"v1 set up no worker within {timeout:g} s: {cluster.machines.tags}")


# --------------------------------------------------------------------------- reading what ran
def docker_run(steps: list[Step]) -> list[str]:
    (run,) = [shlex.split(s.command) for s in steps if s.where == "host" and s.command.startswith("docker run")]
    return run


def run_image(steps: list[Step]) -> str:
    """The image `docker run` starts the node's container from (the word before its command)."""
    return docker_run(steps)[-2]


def bind_mounts(steps: list[Step]) -> dict[str, str]:
    """container path -> host path of the node's container."""
    run = docker_run(steps)
    return dict(reversed(run[i + 1].split(":", 1)) for i, word in enumerate(run) if word == "-v")


def container_commands(steps: list[Step]) -> list[str]:
    return [s.command for s in steps if s.where == "container"]


def without_exports(command: str) -> tuple[dict[str, str], str]:
    """(variables, command) of a command Ray prefixed with `export X=Y;` statements."""
    env = {}
    while m := re.match(r"export (\w+)=('(?:[^']*)'|\S*?);\s*", command):
        env[m.group(1)] = m.group(2).strip("'")
        command = command[m.end():]
    return env, command


def assert_starts_ray(cluster: Cluster, steps: list[Step], kind: str) -> list[dict[str, str]]:
    """The node runs the config's setup then start commands, in order, in its container;
    returns the variables Ray set on each start command."""
    ran = [without_exports(c) for c in container_commands(steps)]
    expected = cluster.config[f"{kind}_setup_commands"] + cluster.config[f"{kind}_start_ray_commands"]
    # Ray expands ~/ to the container's home in commands it runs there.
    assert [c for _, c in ran[-len(expected):]] == [c.replace("~/", f"{CONTAINER_HOME}/") for c in expected]
    return [env for env, _ in ran[len(ran) - len(cluster.config[f"{kind}_start_ray_commands"]):]]


# --------------------------------------------------------------------------- the head
@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_ray_up_sets_up_the_head_for_autoscaler_v2(name, tmp_path, monkeypatch):
    cluster = ray_up(name, tmp_path, monkeypatch)
    steps = cluster.shell.on(cluster.machines.external_ip(cluster.head))
    docker = cluster.config["docker"]
    assert run_image(steps) == docker["head_image"] and run_image(steps).endswith("-cpu")
    assert any(s.command == f"docker pull {docker['head_image']}" for s in steps)
    run = docker_run(steps)
    assert all(option.split()[1] in run for option in docker["run_options"] if option.startswith("--env "))
    for env in assert_starts_ray(cluster, steps, "head"):
        # `ray up` starts the head's autoscaler as v2 unless RAY_UP_enable_autoscaler_v2=0.
        assert env["RAY_enable_autoscaler_v2"] == "1" and env["RAY_CLOUD_INSTANCE_ID"] == cluster.head
    # The head got the config its autoscaler reads, with every worker type in it.
    head_config = json.loads(cluster.head_config_file(tmp_path).read_text())
    assert head_config["available_node_types"].keys() == cluster.config["available_node_types"].keys()


# --------------------------------------------------------------------------- the GPU workers
def assert_gpu_worker_setup(cluster: Cluster, ip: str) -> list[dict[str, str]]:
    """What a GPU worker runs, whichever autoscaler set it up; the variables on its start commands."""
    steps = cluster.shell.on(ip)
    config, docker = cluster.config, cluster.config["docker"]
    node_type = config["available_node_types"][cluster.gpu_type]
    image = docker.get("worker_image", docker.get("image"))
    assert run_image(steps) == image and image.endswith("-gpu")
    assert any(s.command == f"docker pull {image}" for s in steps)
    run = docker_run(steps)
    assert "--runtime=nvidia" in run  # the NVIDIA runtime: the container sees the GPU
    assert all(option.split()[1] in run for option in docker["run_options"] if option.startswith("--env "))
    # The token folder is mounted where RAY_AUTH_TOKEN_PATH points.
    token_path = next(o.split("=", 1)[1] for o in docker["run_options"] if "RAY_AUTH_TOKEN_PATH=" in o)
    assert str(Path(token_path).parent) in bind_mounts(steps)
    # Initialization commands run on the host, before the container starts (they wait for the driver).
    host = [without_exports(s.command)[1] for s in steps if s.where == "host"]
    init = node_type["initialization_commands"]
    assert [c for c in host if c in init] == init
    assert max(host.index(c) for c in init) < next(i for i, c in enumerate(host) if c.startswith("docker run"))
    start_env = assert_starts_ray(cluster, steps, "worker")
    for env in start_env:  # `ray start --address=$RAY_HEAD_IP:6379` with the type's resources
        assert env["RAY_HEAD_IP"] == cluster.head_ip
        assert json.loads(env["RAY_OVERRIDE_RESOURCES"]) == node_type["resources"]
    return start_env


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_autoscaler_v2_sets_up_a_gpu_worker(name, tmp_path, monkeypatch):
    cluster = ray_up(name, tmp_path, monkeypatch)
    ip = install_v2(cluster, tmp_path)
    (worker,) = cluster.machines.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
    for env in assert_gpu_worker_setup(cluster, ip):  # v2 matches the raylet to its instance by these
        assert env["RAY_CLOUD_INSTANCE_ID"] == worker and env["RAY_NODE_TYPE_NAME"] == cluster.gpu_type


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_autoscaler_v1_sets_up_a_gpu_worker(name, tmp_path, monkeypatch):
    cluster = ray_up(name, tmp_path, monkeypatch)
    ip = install_v1(cluster, tmp_path, monkeypatch)
    (worker,) = cluster.machines.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
    assert cluster.machines.node_tags(worker)[TAG_RAY_NODE_STATUS] == STATUS_UP_TO_DATE
    assert_gpu_worker_setup(cluster, ip)


def gpu_check_here(step: Step) -> subprocess.CompletedProcess | None:
    """Run a worker's GPU check on this machine (no CUDA here), as the container would run it:
    the container's copy of the project is this checkout, its python this interpreter."""
    if step.where != "container" or "check_gpu" not in step.command:
        return None
    command = step.command.replace(REMOTE_PROJECT, str(ROOT))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_a_gpu_torch_cannot_use_fails_the_node_before_ray_starts(name, tmp_path, monkeypatch):
    """The worker's GPU check, run for real on this CPU-only machine: v2's installer reports the
    node failed (v2 then retries and replaces it), no `ray start` ran there, so no trial can land
    on it, and the reason is one line."""
    cluster = ray_up(name, tmp_path, monkeypatch, run_here=gpu_check_here)
    with pytest.raises(Exception, match=f"unexpected status: {STATUS_UPDATE_FAILED}"):
        install_v2(cluster, tmp_path)
    (worker,) = cluster.machines.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
    assert cluster.machines.node_tags(worker)[TAG_RAY_NODE_STATUS] == STATUS_UPDATE_FAILED
    ran = [without_exports(c)[1] for c in container_commands(cluster.shell.on(cluster.machines.internal_ip(worker)))]
    assert not any("ray start" in c for c in ran)
    (output,) = cluster.shell.outputs
    (line,) = output.splitlines()
    assert line.startswith("error: GPU check failed: torch sees no CUDA device") and "driver" in line, line
