"""Offline checks of the launcher configs in cluster/, the commands their headers and
cluster/README.md give, and .rayignore. (KubeRay: test_kuberay.py; the image:
test_image.py; autoscaling for real: test_autoscaling.py.)

No cloud is reachable here, so these run Ray's own code instead:
- launcher YAMLs: ray.autoscaler._private.util.prepare_config + validate_config
  (the steps `ray up` runs before it talks to a cloud), plus the properties this
  project relies on (GPU type scaling from 0, Ray pin, setup, token auth, no
  public dashboard port); broken copies must be rejected by the same validator;
- documented commands: parsed by Ray's own CLI and the run command's own parser;
- .rayignore: walked with Ray's own working_dir packaging code.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from ray._private import ray_constants
from ray._private.runtime_env import packaging
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster_files import (
    ROOT, entrypoint, header_commands, job_submissions, load, parse_ray, parse_run, python_tag,
    ray_pin, readme_commands,
)

LAUNCHER_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
REMOTE_PROJECT = "/home/ray/tune_selcopy"
DASHBOARD_PORT = 8265
TUNNEL = f"http://127.0.0.1:{DASHBOARD_PORT}"  # `ray dashboard`'s SSH port-forward


# --------------------------------------------------------------------------- helpers
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
    return request.param, load(request.param)


def test_pin_is_read_from_pyproject():
    pin = ray_pin()
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin)
    assert python_tag().startswith("py3")


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
    pin, py = ray_pin(), python_tag()
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
    assert "whl/cpu" not in worker_torch  # GPU workers need the CUDA build (test_cluster_cuda.py: which)
    # The GPU check fails the node once torch is there, before the project install and Ray's start.
    workers = prepared["worker_setup_commands"]
    (check,) = [i for i, c in enumerate(workers) if "cluster/check_gpu.py" in c]
    assert workers.index(worker_torch) < check < max(i for i, c in enumerate(workers) if REMOTE_PROJECT + "[" in c)
    assert shlex.split(workers[check]) == ["python", f"{REMOTE_PROJECT}/cluster/check_gpu.py"]
    assert (ROOT / "cluster" / "check_gpu.py").is_file()  # file_mounts puts the checkout at REMOTE_PROJECT


def _docker_env(cfg: dict) -> dict[str, str]:
    """The variables every container gets (`docker run --env`)."""
    return dict(o.removeprefix("--env ").split("=", 1) for o in cfg["docker"]["run_options"]
                if o.startswith("--env "))


def test_token_auth_on_every_node(launcher):
    _, cfg = launcher
    assert _docker_env(cfg)["RAY_AUTH_MODE"] == "token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in cfg[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    assert all("$RAY_HEAD_IP" in c for c in cfg["worker_start_ray_commands"] if "ray start" in c)


def test_header_token_commands_make_the_folder_every_node_mounts(launcher, tmp_path, monkeypatch):
    """Runs the header's token commands in an empty home, then follows the config: the
    token reaches every container as a file inside a mounted folder. A folder, because
    Docker bind-mounts each file_mounts path at container creation and `ray up` re-syncs
    a changed file by replacing it: a single-file mount keeps showing the old token."""
    name, cfg = launcher
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    token_commands = [c for c in header_commands(name) if c.argv[0] == "mkdir" or "get-auth-token" in c.argv]
    assert len(token_commands) == 2
    for command in token_commands:
        subprocess.run(["bash", "-c", command.line], env=env, cwd=ROOT, check=True, timeout=120)

    monkeypatch.setenv("HOME", str(tmp_path))

    def local(source: str) -> Path:  # as `ray up` reads a file_mounts source, from the repo root
        return ROOT / os.path.expanduser(source)

    assert all(local(source).is_dir() for source in cfg["file_mounts"].values()), cfg["file_mounts"]
    (remote, source), = [(r, s) for r, s in cfg["file_mounts"].items() if r != REMOTE_PROJECT]
    token = local(source) / "auth_token"
    assert token.read_text() == (tmp_path / ".ray" / "auth_token").read_text() != ""  # what clients read
    assert local(source).stat().st_mode & 0o077 == 0  # the folder is private
    assert _docker_env(cfg)["RAY_AUTH_TOKEN_PATH"] == f"{remote}/auth_token"


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
    cfg = load("aws-gpu.yaml")
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
    cfg["docker"]["imag"] = cfg["docker"].pop("image")


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
    cfg = load(name)
    _validated(copy.deepcopy(cfg))  # the intact file passes ...
    breakage(cfg)
    # jsonschema errors (schema), ValueError (cross-checks), AssertionError
    # (prepare_config's docker check): all are Ray refusing the config.
    with pytest.raises(
        (jsonschema.ValidationError, ValueError, AssertionError), match=re.escape(reason)
    ):
        _validated(cfg)  # ... the broken copy does not


# --------------------------------------------------------------------------- node_config vs the cloud APIs
# Ray passes each node type's node_config to the cloud's create call without looking
# inside; these are the APIs' own request schemas (tests/schemas/README.md).
SCHEMAS = ROOT / "tests" / "schemas"


def gce_instance_schema() -> dict:
    """The body of Compute Engine's instances.insert (an Instance) as JSON Schema.

    From the API's discovery document: Google APIs reject JSON fields they do not know
    ("Unknown name ... Cannot find field"), so every object is closed; int64 fields are
    strings in the document, and the API takes them as JSON numbers too.
    """
    doc = json.loads((SCHEMAS / "gce-compute-v1-instance.json").read_text())

    def convert(node: dict) -> dict:
        if "$ref" in node:
            return {"$ref": f"#/definitions/{node['$ref']}"}
        if node.get("type") == "string" and node.get("format") in ("int64", "uint64"):
            return {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}
        out = {k: node[k] for k in ("type", "enum") if k in node}
        if "items" in node:
            out["items"] = convert(node["items"])
        if node.get("type") == "object":
            out["properties"] = {k: convert(v) for k, v in node.get("properties", {}).items()}
            extra = node.get("additionalProperties")
            out["additionalProperties"] = convert(extra) if extra else False
        return out

    return {"$ref": f"#/definitions/{doc['request']}",
            "definitions": {name: convert(schema) for name, schema in doc["schemas"].items()}}


def ec2_run_instances_schema() -> dict:
    """The input of EC2 RunInstances (what Ray's create_instances(**node_config) sends)
    as JSON Schema: what boto3 checks before sending (unknown or missing parameters,
    types) and the service model's enums, which EC2 checks."""
    doc = json.loads((SCHEMAS / "ec2-2016-11-15-run-instances.json").read_text())
    scalar = {"string": "string", "integer": "integer", "long": "integer", "boolean": "boolean",
              "float": "number", "double": "number", "blob": "string", "timestamp": ["string", "number"]}

    def ref(name: str) -> dict:
        return {"$ref": f"#/definitions/{name}"}

    def convert(shape: dict) -> dict:
        kind = shape["type"]
        if kind == "structure":
            out = {"type": "object", "additionalProperties": False,
                   "properties": {k: ref(m["shape"]) for k, m in shape["members"].items()}}
            return {**out, "required": shape["required"]} if shape.get("required") else out
        if kind == "list":
            return {"type": "array", "items": ref(shape["member"]["shape"])}
        if kind == "map":
            return {"type": "object", "additionalProperties": ref(shape["value"]["shape"])}
        return {"type": scalar[kind], **({"enum": shape["enum"]} if "enum" in shape else {})}

    return {**ref(doc["input"]), "definitions": {name: convert(s) for name, s in doc["shapes"].items()}}


CLOUD_SCHEMAS = {"gcp": gce_instance_schema, "aws": ec2_run_instances_schema}


def _api_request(provider: str, node_config: dict) -> dict:
    """What Ray sends for one node: on AWS with the counts it adds (and without its own
    SubnetIds key, which it turns into SubnetId)."""
    if provider == "aws":
        return {k: v for k, v in node_config.items() if k != "SubnetIds"} | {"MinCount": 1, "MaxCount": 1}
    return node_config


def _api_errors(provider: str, node_config: dict) -> list[str]:
    validator = jsonschema.Draft4Validator(CLOUD_SCHEMAS[provider]())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(_api_request(provider, node_config))]


def test_node_configs_pass_the_cloud_api_schema(launcher):
    _, cfg = launcher
    for node_type in cfg["available_node_types"].values():
        assert _api_errors(cfg["provider"]["type"], node_type["node_config"]) == []


# (provider, breakage of the GPU worker's node_config, the API's complaint)
NODE_CONFIG_BREAKAGES = [
    ("gcp", lambda nc: nc.update(scheduling=[{"onHostMaintenance": "TERMINATE"}]), "is not of type 'object'"),
    ("gcp", lambda nc: nc["scheduling"].update(onHostMaintenance="terminate"), "is not one of ['MIGRATE', 'TERMINATE']"),
    ("gcp", lambda nc: nc.update(machineTyp=nc.pop("machineType")), "'machineTyp' was unexpected"),
    ("aws", lambda nc: nc.update(InstanceTyp=nc.pop("InstanceType")), "'InstanceTyp' was unexpected"),
    ("aws", lambda nc: nc.update(InstanceType="g5.xlarg"), "'g5.xlarg' is not one of"),
    ("aws", lambda nc: nc["BlockDeviceMappings"][0]["Ebs"].update(VolumeSize="100GB"), "is not of type 'integer'"),
]


@pytest.mark.parametrize("provider, breakage, message", NODE_CONFIG_BREAKAGES,
                         ids=["gcp-scheduling-list", "gcp-enum-case", "gcp-typo", "aws-typo", "aws-instance-type",
                              "aws-volume-size"])
def test_broken_node_config_is_rejected_by_the_api_schema(provider, breakage, message):
    cfg = load({"gcp": "gcp-gpu.yaml", "aws": "aws-gpu.yaml"}[provider])
    node_config = copy.deepcopy(next(iter(_gpu_types(cfg).values()))["node_config"])
    breakage(node_config)
    errors = _api_errors(provider, node_config)
    assert len(errors) == 1 and message in errors[0], errors


# --------------------------------------------------------------------------- documented commands
def _documented() -> list:
    return readme_commands() + [c for name in LAUNCHER_CONFIGS for c in header_commands(name)]


def test_documented_ray_commands_parse():
    """Every `ray ...` command in the README and the config headers is one Ray's own CLI
    accepts, on a file that exists; every job's entrypoint is one the run command accepts."""
    ray_commands = [c for c in _documented() if c.argv[0] == "ray"]
    assert len(ray_commands) >= 15
    for command in ray_commands:
        name, params = parse_ray(command.argv)  # click.UsageError names a bad option
        if "cluster_config_file" in params:
            assert (ROOT / params["cluster_config_file"]).is_file(), command
        if name == "submit":
            parse_run(entrypoint(command))
    runs = [c for c in _documented() if c.argv[:3] == ["python", "-m", "tune_selcopy.run"]]
    for command in runs:
        parse_run(command.argv)


def test_documented_sweeps_wait_for_gpu_workers_from_zero():
    """Each documented submission reaches the cluster through the tunnel with the token,
    and asks the autoscaler for GPU workers instead of failing on a cluster that has none
    yet (--wait-for-nodes), with 4 trials per 1-GPU, 4-CPU worker."""
    submissions = job_submissions(_documented())
    assert [c.source for c in submissions] == ["cluster/README.md", *(f"cluster/{n}" for n in LAUNCHER_CONFIGS)]
    for submit in submissions:
        _, params = parse_ray(submit.argv)
        assert submit.env.get("RAY_AUTH_MODE") == "token", submit
        assert (params["address"] or submit.env.get("RAY_ADDRESS")) == TUNNEL, submit
        assert params["working_dir"] == ".", submit
        args = parse_run(entrypoint(submit))
        assert args.wait_for_nodes >= 600, submit
        assert (args.gpus_per_trial, args.cpus_per_trial) == (0.25, 1), submit
        assert re.match(r"(s3|gs)://[^/]+/", args.storage) and args.name, submit


def test_header_commands_drive_their_own_config(launcher):
    name, cfg = launcher
    commands = header_commands(name)
    lifecycle = {parse_ray(c.argv)[0]: parse_ray(c.argv)[1] for c in commands
                 if c.argv[:2] in (["ray", "up"], ["ray", "dashboard"], ["ray", "down"])}
    assert set(lifecycle) == {"up", "dashboard", "down"}
    assert all(p["cluster_config_file"] == f"cluster/{name}" for p in lifecycle.values())
    (submit,) = job_submissions(commands)
    args = parse_run(entrypoint(submit))
    assert args.storage.startswith({"aws": "s3://", "gcp": "gs://"}[cfg["provider"]["type"]])
    (gpu,) = _gpu_types(cfg).values()
    trials = int(gpu["resources"]["GPU"] / args.gpus_per_trial)
    assert trials * args.cpus_per_trial <= gpu["resources"]["CPU"]


def test_aws_head_role_may_launch_the_gpu_workers():
    """The head's role launches the workers: it must pass their instance profile's role
    and read the SSM parameter their `resolve:ssm:` image is named by."""
    cfg = load("aws-gpu.yaml")
    (policy,) = [c for c in readme_commands() if c.argv[:3] == ["aws", "iam", "put-role-policy"]
                 and c.argv[c.argv.index("--role-name") + 1] == "ray-autoscaler-v1"]
    statements = json.loads(policy.argv[policy.argv.index("--policy-document") + 1])["Statement"]

    def allowed(action: str) -> list[str]:
        return [r for st in statements if st["Effect"] == "Allow" and action in _listed(st["Action"])
                for r in _listed(st["Resource"])]

    for worker in _gpu_types(cfg).values():
        node = worker["node_config"]
        role = node["IamInstanceProfile"]["Name"]  # the README names role and profile alike
        assert any(r.endswith(f":role/{role}") for r in allowed("iam:PassRole"))
        image = node["ImageId"]
        if image.startswith("resolve:ssm:"):
            arn = f"arn:aws:ssm:{cfg['provider']['region']}::parameter{image.removeprefix('resolve:ssm:')}"
            assert any(fnmatch.fnmatchcase(arn, r) for r in allowed("ssm:GetParameters")), arn


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def test_gcp_gpu_workers_stop_on_host_maintenance():
    """GPU VMs cannot live-migrate; the Compute Engine API takes `scheduling` as one
    object (a list is a 400 from instances.insert, after `ray up` is under way)."""
    cfg = load("gcp-gpu.yaml")
    for worker in _gpu_types(cfg).values():
        node = worker["node_config"]
        assert node["guestAccelerators"]
        assert isinstance(node["scheduling"], dict)
        assert node["scheduling"]["onHostMaintenance"] == "TERMINATE"


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
            "cluster/aws-gpu.yaml", "tune_selcopy/analysis/results.py"]
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
