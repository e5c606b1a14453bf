"""Offline checks of the cluster configs in cluster/ and of .rayignore.

No cloud is reachable here, so these run Ray's own config code instead:
- launcher YAMLs: ray.autoscaler._private.util.prepare_config + validate_config
  (the steps `ray up` runs before it talks to a cloud), plus the properties this
  project relies on (GPU type scaling from 0, Ray pin, setup, token auth, no
  public dashboard port); broken copies must be rejected by the same validator;
- KubeRay manifest: its RayCluster part through Ray's KubeRay autoscaling-config
  conversion (which validates the result);
- .rayignore: walked with Ray's own working_dir packaging code.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from ray._private import ray_constants
from ray._private.runtime_env import packaging
from ray.autoscaler._private.kuberay.autoscaling_config import (
    _derive_autoscaling_config_from_ray_cr,
)
from ray.autoscaler._private.util import prepare_config, validate_config

from tune_selcopy.run import build_parser

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
REMOTE_PROJECT = "/home/ray/tune_selcopy"
DASHBOARD_PORT = 8265
# The options the run command really has, read from its own parser.
RUN_OPTIONS = {o for a in build_parser()._actions for o in a.option_strings}


# --------------------------------------------------------------------------- helpers
def _ray_pin() -> str:
    """X.Y.Z from the `ray[tune]==X.Y.Z` requirement in pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    pins = [
        m.group(1)
        for d in deps
        if (m := re.fullmatch(r"\s*ray\[[^\]]*\btune\b[^\]]*\]\s*==\s*([0-9][0-9.]*)\s*", d))
    ]
    assert len(pins) == 1, f"expected one ray[tune]==X pin in pyproject.toml, got {deps}"
    return pins[0]


def _python_tag() -> str:
    """py311 from requires-python '>=3.11'."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        req = tomllib.load(f)["project"]["requires-python"]
    m = re.search(r"(\d+)\.(\d+)", req)
    assert m, req
    return f"py{m.group(1)}{m.group(2)}"


def _load(name: str) -> dict:
    with open(CLUSTER / name) as f:
        return yaml.safe_load(f)


def _validated(cfg: dict) -> dict:
    """What `ray up` does to a config before touching a cloud."""
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def _gpu_types(cfg: dict) -> dict:
    return {
        name: nt
        for name, nt in cfg["available_node_types"].items()
        if name != cfg["head_node_type"] and nt.get("resources", {}).get("GPU")
    }


def _walk(obj):
    yield obj
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _world_open_rules(cfg: dict):
    """Every ingress-looking rule (AWS IpPermissions, GCP firewall-style) open to
    the whole internet, with the port range it covers."""
    for node in _walk(cfg):
        if not isinstance(node, dict):
            continue
        ranges = [r.get("CidrIp") for r in node.get("IpRanges", []) if isinstance(r, dict)]
        ranges += [r.get("CidrIpv6") for r in node.get("Ipv6Ranges", []) if isinstance(r, dict)]
        ranges += list(node.get("sourceRanges", []))
        if not any(r in ("0.0.0.0/0", "::/0") for r in ranges):
            continue
        if "FromPort" in node:
            lo, hi = int(node["FromPort"]), int(node.get("ToPort", node["FromPort"]))
            if lo == -1:
                lo, hi = 0, 65535
            yield node, lo, hi
        for allowed in node.get("allowed", []):
            ports = allowed.get("ports") or ["0-65535"]
            for p in ports:
                lo, _, hi = str(p).partition("-")
                yield node, int(lo), int(hi or lo)


def _image_tags(cfg: dict) -> list[str]:
    docker = cfg.get("docker", {})
    images = [docker[k] for k in ("image", "head_image", "worker_image") if docker.get(k)]
    for nt in cfg["available_node_types"].values():
        nd = nt.get("docker", {})
        images += [nd[k] for k in ("worker_image",) if nd.get(k)]
    return images


def _all_commands(cfg: dict) -> list[str]:
    keys = (
        "initialization_commands", "setup_commands", "head_setup_commands",
        "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands",
    )
    cmds = [c for k in keys for c in cfg.get(k, [])]
    for nt in cfg["available_node_types"].values():
        cmds += nt.get("initialization_commands", []) + nt.get("worker_setup_commands", [])
    return cmds


# --------------------------------------------------------------------------- launcher YAMLs
@pytest.fixture(params=LAUNCHER_CONFIGS)
def launcher(request):
    return request.param, _load(request.param)


def test_pin_is_read_from_pyproject():
    pin = _ray_pin()
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin)
    assert _python_tag().startswith("py3")


def test_launcher_config_passes_rays_validator(launcher):
    name, cfg = launcher
    prepared = _validated(cfg)
    assert prepared["provider"]["type"] == {"aws-gpu.yaml": "aws", "gcp-gpu.yaml": "gcp"}[name]
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # the head never scales
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_gpu_worker_type_scales_from_zero(launcher):
    _, cfg = launcher
    prepared = _validated(cfg)
    gpu = _gpu_types(prepared)
    assert len(gpu) == 1, f"expected exactly one GPU worker type, got {list(gpu)}"
    (nt,) = gpu.values()
    res = nt["resources"]
    assert isinstance(res["GPU"], int) and not isinstance(res["GPU"], bool) and res["GPU"] >= 1
    assert isinstance(res["CPU"], int) and res["CPU"] >= 1
    assert nt["min_workers"] == 0
    assert 1 <= nt["max_workers"] <= prepared["max_workers"]
    # --gpus-per-trial 0.25 --cpus-per-trial 1: 4 trials per GPU must fit the CPUs too.
    assert res["CPU"] >= 4 * res["GPU"]
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert "CPU" in head["resources"]
    assert isinstance(prepared["idle_timeout_minutes"], (int, float))
    assert 0 < prepared["idle_timeout_minutes"] <= 60
    # the raw file sets the timeout itself rather than relying on defaults.yaml
    assert "idle_timeout_minutes" in cfg


def test_ray_version_matches_project_pin(launcher):
    _, cfg = launcher
    pin, py = _ray_pin(), _python_tag()
    images = _image_tags(cfg)
    assert images, "no Ray image declared"
    for image in images:
        repo, _, tag = image.partition(":")
        assert repo == "rayproject/ray", image
        assert tag.startswith(f"{pin}-{py}-"), f"{image} does not match ray=={pin} / {py}"
    worker_images = [cfg["docker"].get("worker_image", cfg["docker"].get("image"))]
    assert all(i.endswith("-gpu") for i in worker_images), worker_images
    # any explicit Ray pip install must use the same version
    for cmd in _all_commands(cfg):
        for m in re.finditer(r"ray(?:\[[^\]]*\])?==([0-9][0-9.]*)", cmd):
            assert m.group(1) == pin, cmd


def test_setup_installs_project_on_every_node(launcher):
    _, cfg = launcher
    prepared = _validated(cfg)
    assert cfg["file_mounts"][REMOTE_PROJECT] == "."
    assert ".gitignore" in cfg["rsync_filter"]
    assert any(".git" in e for e in cfg["rsync_exclude"])
    for key in ("head_setup_commands", "worker_setup_commands"):
        cmds = prepared[key]  # setup_commands already merged in by prepare_config
        project = [i for i, c in enumerate(cmds) if "pip install" in c and REMOTE_PROJECT in c]
        torch = [i for i, c in enumerate(cmds) if re.search(r"pip install .*torch==\d", c)]
        assert project, f"{key} does not install the project"
        assert torch and torch[0] < project[0], f"{key}: torch must be installed first"
        assert "[cluster]" in cmds[project[0]], "ray[default] (job server) comes with [cluster]"
    head_torch = next(c for c in prepared["head_setup_commands"] if "torch==" in c)
    worker_torch = next(c for c in prepared["worker_setup_commands"] if "torch==" in c)
    assert "whl/cpu" in head_torch  # head runs no trials
    assert "whl/cpu" not in worker_torch  # GPU workers need the CUDA build
    assert any("torch.cuda.is_available()" in c for c in prepared["worker_setup_commands"])


def test_token_auth_on_every_node(launcher):
    _, cfg = launcher
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in cfg[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    # the token generated locally (`ray get-auth-token --generate`) goes to every node
    assert cfg["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert all("$RAY_HEAD_IP" in c for c in cfg["worker_start_ray_commands"] if "ray start" in c)


def test_dashboard_not_exposed(launcher):
    _, cfg = launcher
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in head_start
    for rule, lo, hi in _world_open_rules(cfg):
        assert not lo <= DASHBOARD_PORT <= hi, f"port {DASHBOARD_PORT} open to the world: {rule}"
    sg = cfg["provider"].get("security_group")
    if sg is not None:  # AWS: only Ray's defaults (intra-cluster + SSH), nothing added
        assert sg.get("IpPermissions", []) == []


def test_world_open_rule_detector_can_fail():
    """The security check above would see a rule like Ray's own example's."""
    cfg = _load("aws-gpu.yaml")
    cfg["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "TCP",
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ]
    _validated(cfg)  # Ray's schema accepts it, so our own check has to catch it
    assert any(lo <= DASHBOARD_PORT <= hi for _, lo, hi in _world_open_rules(cfg))
    gcp_rule = {"sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["8000-9000"]}]}
    assert any(lo <= DASHBOARD_PORT <= hi for _, lo, hi in _world_open_rules({"x": gcp_rule}))


def _gpu_name(cfg):
    return next(iter(_gpu_types(cfg)))


def _break_top_level_typo(cfg):
    cfg["idle_timeout_minute"] = cfg.pop("idle_timeout_minutes")


def _break_node_type_typo(cfg):
    nt = cfg["available_node_types"][_gpu_name(cfg)]
    nt["min_worker"] = nt.pop("min_workers")


def _break_fractional_gpu(cfg):
    cfg["available_node_types"][_gpu_name(cfg)]["resources"]["GPU"] = 0.25


def _break_string_count(cfg):
    cfg["available_node_types"][_gpu_name(cfg)]["max_workers"] = "8"


def _break_missing_resources(cfg):
    del cfg["available_node_types"][_gpu_name(cfg)]["resources"]


def _break_missing_node_config(cfg):
    del cfg["available_node_types"][_gpu_name(cfg)]["node_config"]


def _break_unknown_head(cfg):
    cfg["head_node_type"] = "head.gpu.typo"


def _break_min_above_max(cfg):
    cfg["available_node_types"][_gpu_name(cfg)]["min_workers"] = cfg["max_workers"] + 1


def _break_docker_typo(cfg):
    cfg["docker"]["worker_imag"] = cfg["docker"].pop("worker_image")


# (breakage, what Ray's validator says about it)
BREAKAGES = [
    (_break_top_level_typo, "'idle_timeout_minute' was unexpected"),
    (_break_node_type_typo, "'min_worker' was unexpected"),
    (_break_fractional_gpu, "0.25 is not of type 'integer'"),
    (_break_string_count, "'8' is not of type 'integer'"),
    (_break_missing_resources, "'resources' is a required property"),
    (_break_missing_node_config, "'node_config' is a required property"),
    (_break_unknown_head, "must be one of `available_node_types`"),
    (_break_min_above_max, "smaller than the sum of `min_workers`"),
    (_break_docker_typo, "Must provide a container & image name"),
]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
@pytest.mark.parametrize(
    "breakage, reason", BREAKAGES, ids=[b.__name__[len("_break_"):] for b, _ in BREAKAGES]
)
def test_broken_copy_is_rejected(name, breakage, reason):
    cfg = _load(name)
    _validated(copy.deepcopy(cfg))  # the intact file passes ...
    breakage(cfg)
    # jsonschema errors (schema), ValueError (cross-checks), AssertionError
    # (prepare_config's docker check): all are Ray refusing the config.
    with pytest.raises(
        (jsonschema.ValidationError, ValueError, AssertionError), match=re.escape(reason)
    ):
        _validated(cfg)  # ... the broken copy does not


# --------------------------------------------------------------------------- KubeRay
@pytest.fixture(scope="module")
def rayjob():
    return _load("kuberay.yaml")


def _raycluster_from(rayjob: dict) -> dict:
    """The RayJob's embedded cluster as a RayCluster CR (what the operator creates)."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": rayjob["metadata"]["name"],
            "namespace": rayjob["metadata"].get("namespace", "default"),
        },
        "spec": copy.deepcopy(rayjob["spec"]["rayClusterSpec"]),
    }


def test_kuberay_is_a_rayjob(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True


def test_kuberay_converts_through_rays_autoscaler_code(rayjob):
    cfg = _derive_autoscaling_config_from_ray_cr(_raycluster_from(rayjob))  # validates
    types = cfg["available_node_types"]
    head = types.pop("headgroup")
    assert head["resources"].get("GPU", 0) == 0
    assert len(types) == 1
    (gpu,) = types.values()
    assert gpu["min_workers"] == 0
    assert gpu["max_workers"] >= 1
    assert isinstance(gpu["resources"]["GPU"], int) and gpu["resources"]["GPU"] >= 1
    assert gpu["resources"]["CPU"] >= 4 * gpu["resources"]["GPU"]
    assert cfg["idle_timeout_minutes"] == rayjob["spec"]["rayClusterSpec"][
        "autoscalerOptions"]["idleTimeoutSeconds"] / 60


def test_kuberay_gpu_limit_on_worker_group(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    (group,) = spec["workerGroupSpecs"]
    assert group["minReplicas"] == 0 and group["replicas"] == 0
    assert group["maxReplicas"] >= 1
    (container,) = group["template"]["spec"]["containers"]
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert isinstance(gpus, int) and gpus >= 1
    head_limits = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert not any(k.endswith("gpu") for k in head_limits)


def test_kuberay_version_matches_pin(rayjob):
    pin, py = _ray_pin(), _python_tag()
    spec = rayjob["spec"]["rayClusterSpec"]
    assert str(spec["rayVersion"]) == pin
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for g in groups:
        for c in g["template"]["spec"]["containers"]:
            assert f"ray{pin}-{py}" in c["image"] or c["image"].startswith(
                f"rayproject/ray:{pin}-{py}"), c["image"]


def test_kuberay_entrypoint_runs_our_module_on_a_bucket(rayjob):
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "tune_selcopy.run", "attn_invent"]
    opts = [a for a in argv[4:] if a.startswith("--")]
    assert set(opts) <= RUN_OPTIONS, set(opts) - RUN_OPTIONS
    storage = argv[argv.index("--storage") + 1]
    assert re.match(r"(s3|gs)://[^/]+/", storage), storage
    assert float(argv[argv.index("--gpus-per-trial") + 1]) == 0.25
    # GPU workers scale from 0: the feasibility check must wait for the autoscaler.
    assert float(argv[argv.index("--wait-for-nodes") + 1]) >= 600


def test_kuberay_security(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_kuberay_broken_copies_are_rejected(rayjob):
    rc = _raycluster_from(rayjob)
    no_max = copy.deepcopy(rc)
    del no_max["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    with pytest.raises(KeyError):
        _derive_autoscaling_config_from_ray_cr(no_max)
    fractional = copy.deepcopy(rc)
    fractional["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = "0.25"
    with pytest.raises(ValueError):
        _derive_autoscaling_config_from_ray_cr(fractional)
    typo = copy.deepcopy(rc)
    typo["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = "four"
    with pytest.raises(ValueError):
        _derive_autoscaling_config_from_ray_cr(typo)


# --------------------------------------------------------------------------- .rayignore
def _uploaded(root: Path) -> list[str]:
    """Files `ray job submit --working-dir root` would zip, via Ray's own walker
    (.rayignore only: .gitignore deliberately not included)."""
    files: list[str] = []

    def handler(p: Path):
        if p.is_file():
            files.append(p.relative_to(root).as_posix())

    packaging._dir_travel(root, [], handler, include_gitignore=False)
    return files


def test_rayignore_keeps_bulk_out_of_the_upload(tmp_path):
    (tmp_path / ".rayignore").write_text((ROOT / ".rayignore").read_text())
    keep = ["tune_selcopy/run.py", "search_spaces/__init__.py", "pyproject.toml",
            "cluster/aws-gpu.yaml", "tune_selcopy/results.py"]
    drop = [".venv/lib/python3.11/site-packages/torch/__init__.py", ".git/objects/ab/cdef",
            "results/attn_invent/logs/part-0.parquet", "ray_results/exp/state.json",
            "tune_selcopy/__pycache__/run.cpython-311.pyc", ".pytest_cache/v/x",
            "tune_selcopy.egg-info/PKG-INFO", "build/lib/x.py", "checkpoint.ckpt"]
    for rel in keep + drop:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    uploaded = set(_uploaded(tmp_path))
    assert set(keep) <= uploaded
    assert not uploaded & set(drop), uploaded & set(drop)


def test_repo_upload_fits_the_job_limit():
    files = _uploaded(ROOT)
    assert "pyproject.toml" in files and "tune_selcopy/__init__.py" in files
    assert not [f for f in files if f.startswith((".venv/", ".git/"))]
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < ray_constants.DASHBOARD_CLIENT_MAX_SIZE  # 100 MiB request cap
