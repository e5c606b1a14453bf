"""The torch CUDA build each node installs, checked against cluster/README.md's tables, and
the GPU workers' setup check (cluster/check_gpu.py), run on this machine.

The tables are the one place these facts live: people read them, and this test reads them
too, so a config, the Dockerfile and the docs cannot drift apart. The first table says, per
node, which image, GPU, driver and torch build; the second what each torch build needs
(minimum driver, GPU architectures). Each config must install exactly its row's build, from
its row's index, at the project's torch pin, and that build must run on its row's driver and
GPUs.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

import pytest

from cluster_files import README, ROOT, load

DOCKERFILE = ROOT / "cluster" / "Dockerfile"
CHECK_GPU = ROOT / "cluster" / "check_gpu.py"
# The GPU each machine carries: EC2's G5 instances an NVIDIA A10G, GKE's G2 machines an L4;
# an N1 machine the accelerator attached to it (Compute Engine's name for it in the launcher
# config, "+ T4" in the README's KubeRay pod table, which names the node types the image's
# pods are sized for).
GPU_OF = {"g5.xlarge": "A10G", "g2-standard-4": "L4", "n1-standard-4": "T4", "nvidia-tesla-t4": "T4"}


# --------------------------------------------------------------------------- the tables
def markdown_table(heading: str) -> list[dict[str, str]]:
    """The rows of the first table after the line ``heading`` in cluster/README.md."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("| "))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, _, *body = rows
    return [dict(zip(header, row)) for row in body]


def code(cell: str) -> list[str]:
    """The `code` spans of a cell."""
    return re.findall(r"`([^`]+)`", cell)


def capabilities(cell: str) -> list[tuple[int, int]]:
    return [(int(major), int(minor)) for major, minor in re.findall(r"\b(\d+)\.(\d+)\b", cell)]


def minimum_driver(cell: str) -> int:
    """The driver branch a cell guarantees ("580 or newer (...)", "580 (...)")."""
    return int(re.match(r"(?:your node pool's: )?(\d+)", cell).group(1))


@dataclass(frozen=True)
class Build:
    index: str
    driver: int
    architectures: list[tuple[int, int]]

    def runs_on(self, gpu: tuple[int, int]) -> bool:
        """Kernels for X.y run on X.z for z >= y (CUDA's binary compatibility)."""
        return any(major == gpu[0] and minor <= gpu[1] for major, minor in self.architectures)


def builds() -> dict[str, Build]:
    """torch build ("CUDA 13.0") -> what it needs, from the README's second table."""
    table = markdown_table("The CUDA builds of torch 2.13")
    return {re.match(r"CUDA \d+\.\d+", row["torch 2.13 build"]).group(0):
            Build(code(row["index URL"])[0], minimum_driver(row["NVIDIA driver"]),
                  capabilities(row["GPU architectures (compute capability)"]))
            for row in table}


def nodes() -> dict[str, dict[str, str]]:
    """node ("`aws-gpu.yaml` GPU workers") -> its row of the README's first table."""
    return {row["node"]: row for row in markdown_table("## Which torch build each node installs")}


# --------------------------------------------------------------------------- what installs torch
def torch_pin() -> str:
    (pin,) = re.findall(r'^TORCH="torch==([0-9][0-9.]*)"', (ROOT / "scripts" / "setup.sh").read_text(), re.M)
    return pin


def torch_installs(commands: list[str]) -> list[list[str]]:
    return [shlex.split(c) for c in commands if re.search(r"pip install .*\btorch==", c)]


def index_of(install: list[str]) -> str:
    """The index a `pip install torch==X --index-url URL` takes torch from."""
    assert f"torch=={torch_pin()}" in install, install  # the version CPU machines and CI run
    assert "--index-url" in install, f"no explicit build: {shlex.join(install)}"
    return install[install.index("--index-url") + 1]


def dockerfile_steps() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def gpu_worker(name: str) -> dict:
    cfg = load(name)
    (worker,) = [nt for t, nt in cfg["available_node_types"].items() if nt["resources"].get("GPU")]
    return worker


def gpus_of_config(name: str) -> set[str]:
    node_config = gpu_worker(name)["node_config"]
    if "InstanceType" in node_config:
        return {GPU_OF[node_config["InstanceType"]]}
    return {GPU_OF[a["acceleratorType"]] for a in node_config["guestAccelerators"]}


def kuberay_gpu_nodes() -> set[str]:
    """The GPU node types the README's KubeRay pod table sizes the worker pods for."""
    (row,) = [line for line in README.read_text().splitlines() if line.startswith("| GPU worker |")]
    return {GPU_OF[name] for name in code(row) if name in GPU_OF}


# What installs torch on each node of the first table, where its image is named, and the GPUs
# it has.
def _launcher(name: str, kind: str):
    def installs() -> list[list[str]]:
        return torch_installs(load(name)[f"{kind}_setup_commands"])
    return installs


SOURCES = {
    "`aws-gpu.yaml` GPU workers": (_launcher("aws-gpu.yaml", "worker"),
                                   lambda: [gpu_worker("aws-gpu.yaml")["node_config"]["ImageId"]],
                                   lambda: gpus_of_config("aws-gpu.yaml")),
    "`gcp-gpu.yaml` GPU workers": (_launcher("gcp-gpu.yaml", "worker"),
                                   lambda: [d["initializeParams"]["sourceImage"]
                                            for d in gpu_worker("gcp-gpu.yaml")["node_config"]["disks"]],
                                   lambda: gpus_of_config("gcp-gpu.yaml")),
    "`Dockerfile` (KubeRay pods)": (lambda: torch_installs([a for k, a in dockerfile_steps() if k == "RUN"]),
                                    lambda: [a for k, a in dockerfile_steps() if k == "FROM"],
                                    kuberay_gpu_nodes),
    "head nodes (both configs)": (lambda: [*_launcher("aws-gpu.yaml", "head")(), *_launcher("gcp-gpu.yaml", "head")()],
                                  lambda: [load(n)["docker"]["head_image"] for n in ("aws-gpu.yaml", "gcp-gpu.yaml")],
                                  lambda: set()),
}


def test_the_table_names_every_node_that_installs_torch():
    assert set(nodes()) == set(SOURCES)
    assert set(builds()) == {"CUDA 12.6", "CUDA 13.0", "CUDA 13.2"}


@pytest.mark.parametrize("node", list(SOURCES))
def test_each_node_installs_its_rows_build_from_its_index(node):
    row = nodes()[node]
    installs, images, _ = SOURCES[node]
    assert installs(), f"{node}: no torch install found"
    assert {index_of(i) for i in installs()} == set(code(row["index URL"])), node
    # The image the row names is the one the config runs.
    (named,) = code(row["image / AMI"])
    assert images() and all(named in image for image in images()), (named, images())


@pytest.mark.parametrize("node", [n for n in SOURCES if "head" not in n])
def test_each_gpu_nodes_build_runs_on_its_driver_and_gpus(node):
    row = nodes()[node]
    build = builds()[row["torch build"]]
    assert build.index == code(row["index URL"])[0]  # both tables agree
    assert minimum_driver(row["NVIDIA driver"]) >= build.driver, (node, row["NVIDIA driver"], build)
    gpus = dict(zip(re.findall(r"\b(A10G|T4|L4)\b", row["GPU (compute capability)"]),
                    capabilities(row["GPU (compute capability)"])))
    assert set(gpus) == SOURCES[node][2](), (node, gpus)  # the GPUs the config's machines have
    assert all(build.runs_on(capability) for capability in gpus.values()), (node, gpus, build)


def test_the_check_would_catch_a_build_the_driver_cannot_run():
    """The rule itself: the CUDA 13.0 build on the retired CUDA 12.4 image (driver 550) fails,
    and on a Volta (7.0) GPU too."""
    cuda13 = builds()["CUDA 13.0"]
    assert minimum_driver("550 (CUDA 12.4)") < cuda13.driver
    assert not cuda13.runs_on((7, 0)) and cuda13.runs_on((8, 9))


# --------------------------------------------------------------------------- the GPU check
def run_check(*setup: str) -> subprocess.CompletedProcess:
    """cluster/check_gpu.py as a worker's setup runs it, here, after ``setup`` (Python)."""
    program = "\n".join([*setup, "import runpy", f"runpy.run_path({str(CHECK_GPU)!r}, run_name='__main__')"])
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)


def test_gpu_check_fails_in_one_line_where_torch_sees_no_gpu():
    import torch

    done = run_check()
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: GPU check failed: torch sees no CUDA device; ")
    assert f"torch {torch.__version__}" in line and "driver " in line


def test_gpu_check_reports_what_the_gpu_stack_raises():
    """Past is_available(), what fails (here: no CUDA in a CPU build) is the line's reason."""
    done = run_check("import torch", "torch.cuda.is_available = lambda: True")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: GPU check failed: Torch not compiled with CUDA enabled; torch "), line


def test_gpu_check_is_what_the_launcher_configs_run():
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml"):
        (check,) = [c for c in load(name)["worker_setup_commands"] if "check_gpu" in c]
        assert shlex.split(check) == ["python", f"/home/ray/tune_selcopy/{CHECK_GPU.relative_to(ROOT)}"]


@pytest.mark.parametrize("text, version", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n", "535.104.05"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  "
     "(dvs-builder@U16-I3-B03-4-3)  Tue Sep 23 09:48:26 UTC 2025\nGCC version:  gcc version 12.3.0\n", "580.95.05"),
])
def test_driver_version_is_read_from_the_kernel_module(tmp_path, monkeypatch, text, version):
    spec = importlib.util.spec_from_file_location("check_gpu", CHECK_GPU)
    check_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_gpu)
    (tmp_path / "version").write_text(text)
    monkeypatch.setattr(check_gpu, "DRIVER_VERSION_FILE", tmp_path / "version")
    assert check_gpu.driver_version() == version
