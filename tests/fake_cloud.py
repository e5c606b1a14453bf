"""A cloud that runs nothing: what Ray's cluster launcher does to each machine, recorded.

No cloud is reachable here, so the launch path is driven through Ray's own code (`ray up`'s
head setup, autoscaler v2's RayInstaller, autoscaler v1's StandardAutoscaler) with the two
stand-ins Ray's code takes as arguments:

- ``Machines``, a node provider: machines with tags and IP addresses, nothing else. Ray's
  base ``NodeProvider.get_command_runner`` is kept, so Ray builds its own SSH and Docker
  command runners for each machine, as the AWS provider (and the GCP one, for VMs) does.
- ``Shell``, the process runner (Ray's ``process_runner=subprocess``): it records every
  command Ray would run over SSH, answers the few whose output Ray parses the way a fresh
  machine with Docker and the NVIDIA container runtime answers, and can hand chosen
  commands to this machine to really run (``run_here``). An ``rsync`` of a file is copied into
  a folder per machine (``root/<ip>/...``), so what ``ray up`` puts on the head (its
  autoscaling config) can be read back; an ``rsync`` of a folder only creates the folder.

``Step`` is one recorded command as it would run on the machine: Ray's SSH, login-shell and
``docker exec`` wrapping taken off again, so tests read ``pip install ...``, not five layers
of quoting.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ray.autoscaler.node_provider import NodeProvider

# Ray runs every remote command as `bash --login -c -i '<prefix>(<command>)'`.
_LOGIN_PREFIX = "source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && ("
CONTAINER_HOME = "/home/ray"  # the Ray images' home folder
# What the answers below say about the machine: Docker installed, no container running yet,
# the Ray image's home folder, the NVIDIA container runtime, 15 GB of free memory.
_ANSWERS = [
    ("command -v docker", "/usr/bin/docker"),
    (".State.Running", ""),
    ("json .Config.Env", json.dumps([f"HOME={CONTAINER_HOME}", "PATH=/usr/local/bin:/usr/bin:/bin"])),
    ("printenv HOME", CONTAINER_HOME),
    (".Runtimes", "map[io.containerd.runc.v2:{} nvidia:{nvidia-container-runtime} runc:{runc}]"),
    ("/proc/meminfo", "MemAvailable:   15000000 kB"),
]


@dataclass(frozen=True)
class Step:
    """One command on one machine: ``where`` is "host", "container" or "rsync"."""

    ip: str
    where: str
    command: str


def _unwrap_login_shell(text: str) -> str:
    inner = shlex.split(text)[-1]
    assert inner.startswith(_LOGIN_PREFIX) and inner.endswith(")"), inner
    return inner[len(_LOGIN_PREFIX):-1]


def step_of(argv: list[str]) -> Step:
    """The command Ray's command runner wrapped into ``argv``, where it runs."""
    if argv[0] == "rsync":
        return Step(argv[-1].split("@", 1)[1].split(":", 1)[0], "rsync", shlex.join(argv[-2:]))
    target = next(i for i, word in enumerate(argv) if "@" in word and not word.startswith("-"))
    ip = argv[target].split("@", 1)[1]
    command = _unwrap_login_shell(argv[-1])
    if command.startswith("docker exec") and shlex.split(command)[-1].startswith("bash --login"):
        return Step(ip, "container", _unwrap_login_shell(shlex.split(command)[-1]))
    return Step(ip, "host", command)


class Machines(NodeProvider):
    """Machines as a cloud's API shows them: tags and addresses."""

    def __init__(self, provider_config: dict, cluster_name: str):
        super().__init__(provider_config, cluster_name)
        self.tags: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()  # v1 launches nodes from its own threads

    def non_terminated_nodes(self, tag_filters: dict) -> list[str]:
        with self._lock:
            return [node for node, tags in self.tags.items()
                    if all(tags.get(k) == v for k, v in tag_filters.items())]

    def is_running(self, node_id: str) -> bool:
        return node_id in self.tags

    def is_terminated(self, node_id: str) -> bool:
        return node_id not in self.tags

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self.tags[node_id])

    def internal_ip(self, node_id: str) -> str:
        return f"10.0.0.{list(self.tags).index(node_id) + 1}"

    def external_ip(self, node_id: str) -> str:
        return f"203.0.113.{list(self.tags).index(node_id) + 1}"

    def set_node_tags(self, node_id: str, tags: dict) -> None:
        with self._lock:
            self.tags[node_id].update(tags)

    def create_node(self, node_config: dict, tags: dict, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self.tags[f"i-{len(self.tags):04d}"] = dict(tags)

    def terminate_node(self, node_id: str) -> None:
        with self._lock:
            del self.tags[node_id]


class Shell:
    """Ray's process runner, recording instead of running (see the module docstring)."""

    DEVNULL = subprocess.DEVNULL

    def __init__(self, root: Path, run_here: Callable[[Step], subprocess.CompletedProcess | None] = lambda _: None):
        self.root = root
        self.run_here = run_here
        self.steps: list[Step] = []
        self.outputs: list[str] = []  # what the commands run here printed
        self._lock = threading.Lock()

    def _record(self, argv: list[str]) -> Step:
        step = step_of(argv)
        with self._lock:
            self.steps.append(step)
        return step

    def check_call(self, argv: list[str], **_) -> int:
        step = self._record(argv)
        if step.where == "rsync":
            self._copy(*shlex.split(step.command), step.ip)
            return 0
        done = self.run_here(step)
        if done is not None:
            self.outputs.append(done.stdout + done.stderr)
            if done.returncode:
                raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return 0

    def check_output(self, argv: list[str], **_) -> bytes:
        step = self._record(argv)
        return next((answer for question, answer in _ANSWERS if question in step.command), "").encode()

    def _copy(self, source: str, target: str, ip: str) -> None:
        where = self.machine_folder(ip) / target.split(":", 1)[1].lstrip("/")
        if Path(source).is_dir():
            where.mkdir(parents=True, exist_ok=True)
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, where)

    def machine_folder(self, ip: str) -> Path:
        """What the rsyncs to the machine at ``ip`` put there."""
        return self.root / ip

    def on(self, ip: str, where: str | None = None) -> list[Step]:
        """The steps run on one machine (in the container, on the host, or both)."""
        return [s for s in self.steps if s.ip == ip and (where is None or s.where == where)]
