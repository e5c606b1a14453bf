"""Offline checks of cluster/kuberay.yaml, a KubeRay RayJob, against what a real cluster
would apply to it:

- the Kubernetes API server: the RayJob CRD's schema of a pinned KubeRay release
  (tests/schemas/, see its README), with unknown fields rejected as under strict field
  validation;
- the KubeRay operator: its admission checks that apply to this manifest;
- Ray's autoscaler: its KubeRay conversion of the cluster spec (which validates it);
- the scheduler: every pod's requests against the allocatable resources of the node
  types cluster/README.md names.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
from dataclasses import dataclass

import jsonschema
import pytest
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig, Provider

from cluster_files import README, ROOT, load, parse_run, python_tag, ray_pin

KUBERAY_RELEASE = "v1.5.1"
SCHEMA = ROOT / "tests" / "schemas" / f"kuberay-{KUBERAY_RELEASE}-rayjob-v1.json"
# KubeRay's own limit (ray-operator/controllers/ray/utils/constant.go, v1.5.1):
# MaxRayJobNameLength = MaxRayClusterNameLength (53) - 6.
MAX_RAYJOB_NAME = 47
# validation.go: authOptions.mode token needs rayVersion >= 2.52.0.
MIN_RAY_FOR_TOKEN_AUTH = (2, 52, 0)


@pytest.fixture(scope="module")
def rayjob():
    return load("kuberay.yaml")


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


def _groups(rayjob: dict) -> dict[str, dict]:
    spec = rayjob["spec"]["rayClusterSpec"]
    return {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}


def _container(group: dict) -> dict:
    (container,) = group["template"]["spec"]["containers"]
    return container


# --------------------------------------------------------------------------- the API server
def api_server_schema(schema: dict) -> dict:
    """A CRD's structural schema as JSON Schema that fails where the API server, under
    strict field validation, rejects a manifest.

    The API server prunes every object field the schema does not declare (unless the
    object has ``x-kubernetes-preserve-unknown-fields: true``); strict validation, which
    ``kubectl apply`` asks for, turns each pruned field into an error. So every object
    schema without ``additionalProperties`` gets ``additionalProperties: false``.
    ``nullable`` becomes a null type. The root ``metadata`` is ObjectMeta, which the API
    server validates itself and the CRD leaves open.
    """

    def strict(node: dict) -> dict:
        out = dict(node)
        if "properties" in node:
            out["properties"] = {k: strict(v) for k, v in node["properties"].items()}
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = strict(node["additionalProperties"])
        if "items" in node:
            out["items"] = strict(node["items"])
        for key in ("anyOf", "allOf", "oneOf"):
            if key in node:
                out[key] = [strict(n) for n in node[key]]
        if (node.get("type") == "object" and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        if node.get("nullable"):
            out["type"] = [node["type"], "null"]
        return out

    root = strict(schema)
    root["properties"]["metadata"] = {"type": "object"}
    return root


@pytest.fixture(scope="module")
def crd_validator():
    schema = api_server_schema(json.loads(SCHEMA.read_text()))
    # OpenAPI 3.0's schema object is JSON Schema draft 4/5 (boolean exclusiveMinimum etc.).
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _errors(validator, manifest: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_manifest_passes_the_pinned_crd_schema(rayjob, crd_validator):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert _errors(crd_validator, rayjob) == []


def _typo_ttl(job):
    job["spec"]["ttlSecondAfterFinished"] = job["spec"].pop("ttlSecondsAfterFinished")


def _fast_upscaling(job):
    job["spec"]["rayClusterSpec"]["autoscalerOptions"]["upscalingMode"] = "Fast"


def _typo_service_type(job):
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    head["serviceTyp"] = head.pop("serviceType")


def _memory_in_gb(job):  # not a Kubernetes quantity (10G or 10Gi are)
    _container(_groups(job)["gpu-workers"])["resources"]["requests"]["memory"] = "10GB"


def _gpu_limit_typo(job):
    limits = _container(_groups(job)["gpu-workers"])["resources"]["limits"]
    limits["nvidia.com/gpu"] = [limits.pop("nvidia.com/gpu")]


# (breakage, where the API server complains, what it says)
TYPOS = [
    (_typo_ttl, "spec", "'ttlSecondAfterFinished' was unexpected"),
    (_fast_upscaling, "spec.rayClusterSpec.autoscalerOptions.upscalingMode",
     "'Fast' is not one of ['Default', 'Aggressive', 'Conservative']"),
    (_typo_service_type, "spec.rayClusterSpec.headGroupSpec", "'serviceTyp' was unexpected"),
    (_memory_in_gb, "spec.rayClusterSpec.workerGroupSpecs.0.template.spec.containers.0"
                    ".resources.requests.memory", "'10GB' does not match"),
    (_gpu_limit_typo, "spec.rayClusterSpec.workerGroupSpecs.0.template.spec.containers.0"
                      ".resources.limits.nvidia.com/gpu", "is not valid under any of the given schemas"),
]


@pytest.mark.parametrize("breakage, path, message", TYPOS, ids=[b.__name__.strip("_") for b, _, _ in TYPOS])
def test_typod_copy_is_rejected(rayjob, crd_validator, breakage, path, message):
    broken = copy.deepcopy(rayjob)
    breakage(broken)
    errors = _errors(crd_validator, broken)
    assert len(errors) == 1 and errors[0].startswith(f"{path}: ") and message in errors[0], errors


def test_manifest_sets_no_field_with_unevaluated_cel_rules(rayjob):
    """The CRD's CEL rules (x-kubernetes-validations) are not evaluated here; they guard
    only these fields, which the manifest leaves unset."""

    def cel_paths(node, path=()):
        if "x-kubernetes-validations" in node:
            yield path
        for name, child in node.get("properties", {}).items():
            yield from cel_paths(child, (*path, name))

    paths = list(cel_paths(json.loads(SCHEMA.read_text())))
    assert paths == [("spec", "deletionStrategy"), ("spec", "managedBy"), ("spec", "rayClusterSpec", "managedBy")]
    for path in paths:
        node = rayjob
        for key in path[:-1]:
            node = node[key]
        assert path[-1] not in node, path


# --------------------------------------------------------------------------- the operator
def test_operator_admission_checks(rayjob):
    """The checks of KubeRay's ValidateRayJobMetadata/Spec and ValidateRayClusterSpec
    (validation.go, v1.5.1) that this manifest could fail."""
    name = rayjob["metadata"]["name"]
    assert len(name) <= MAX_RAYJOB_NAME and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert tuple(int(p) for p in cluster["rayVersion"].split(".")) >= MIN_RAY_FOR_TOKEN_AUTH
    for group in _groups(rayjob).values():
        assert group["template"]["spec"]["containers"]
        # resources in rayStartParams and in the group's `resources` field exclude each other
        assert not (set(group["rayStartParams"]) & {"num-cpus", "num-gpus", "memory", "resources"}
                    and group.get("resources"))
    # Autoscaler v2 chosen by autoscalerOptions.version: not also by the head's environment,
    # and no pod that restarts in place.
    head_env = {e["name"] for e in _container(_groups(rayjob)["head"]).get("env", [])}
    assert cluster["autoscalerOptions"]["version"] == "v2" and "RAY_enable_autoscaler_v2" not in head_env
    for group in _groups(rayjob).values():
        assert group["template"]["spec"].get("restartPolicy", "Never") == "Never"


# --------------------------------------------------------------------------- Ray's autoscaler
def test_autoscaler_v2_reads_the_cluster_as_ray_builds_it(rayjob):
    """On KubeRay, autoscaler v2 reads the RayCluster through KubeRayConfigReader: Ray's
    conversion, then AutoscalingConfig. Its provider creates pods itself (no node updater, so
    no Docker settings or setup commands to read: nothing like the launcher configs'
    KeyError 'image' can happen here); the GPU group scales 0 to 8 with 1 GPU and 4 CPUs each."""
    config = AutoscalingConfig(_derive_autoscaling_config_from_ray_cr(_raycluster_from(rayjob)))
    assert config.provider == Provider.KUBERAY and config.disable_node_updaters()
    types = config.get_node_type_configs()
    gpu = types.pop("gpu-workers")
    assert (gpu.min_worker_nodes, gpu.max_worker_nodes) == (0, 8)
    assert {k: gpu.resources[k] for k in ("CPU", "GPU")} == {"CPU": 4, "GPU": 1}
    (head,) = types.values()
    assert head.resources["GPU"] == 0
    assert config.get_idle_timeout_s() == rayjob["spec"]["rayClusterSpec"]["autoscalerOptions"]["idleTimeoutSeconds"]


def test_converts_through_rays_autoscaler_code(rayjob):
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


def test_head_is_pinned_to_zero_gpus(rayjob):
    """Without num-gpus "0", Ray on the head counts the GPUs its container can see: on
    a runtime that shows every pod all GPUs, trials would run on the head."""
    head = _groups(rayjob)["head"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert not any(k.endswith("gpu") for part in _container(head)["resources"].values() for k in part)


def test_gpu_limit_on_worker_group(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    (group,) = spec["workerGroupSpecs"]
    assert group["minReplicas"] == 0 and group["replicas"] == 0
    assert group["maxReplicas"] >= 1
    gpus = _container(group)["resources"]["limits"]["nvidia.com/gpu"]
    assert isinstance(gpus, int) and gpus >= 1


def test_version_matches_pin(rayjob):
    pin, py = ray_pin(), python_tag()
    spec = rayjob["spec"]["rayClusterSpec"]
    assert str(spec["rayVersion"]) == pin
    for group in _groups(rayjob).values():
        image = _container(group)["image"]
        assert f"ray{pin}-{py}" in image or image.startswith(f"rayproject/ray:{pin}-{py}"), image


def test_entrypoint_runs_our_module_on_a_bucket(rayjob):
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    args = parse_run(argv)  # the run command's own parser accepts it
    assert args.space == "attn_invent"
    assert re.match(r"(s3|gs)://[^/]+/", args.storage), args.storage
    assert args.gpus_per_trial == 0.25 and args.cpus_per_trial == 1
    # GPU workers scale from 0: the feasibility check must wait for the autoscaler.
    assert args.wait_for_nodes >= 600


def test_security(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_broken_copies_are_rejected_by_rays_conversion(rayjob):
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


# --------------------------------------------------------------------------- the scheduler
# CPU the kubelet reserves, in tiers of the machine's cores: 6 % of the first core, 1 % of
# the second, 0.5 % of the third and fourth, 0.25 % of the rest. Same rule on GKE ("Plan
# GKE Standard node sizes", cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes)
# and EKS (amazon-eks-ami nodeadm/internal/kubelet/config.go, getCPUMillicoresToReserve).
CPU_TIERS = [(1000, 0.06), (2000, 0.01), (4000, 0.005), (math.inf, 0.0025)]
# GKE's memory reservation (same page): 25 % of the first 4 GiB, 20 % of the next 4, 10 %
# of the next 8, 6 % of the next 112, 2 % above 128 GiB.
GKE_MEMORY_TIERS = [(4096, 0.25), (8192, 0.20), (16384, 0.10), (131072, 0.06), (math.inf, 0.02)]
# Both evict pods below 100 MiB free (GKE: same page; EKS: nodeadm's evictionHard).
EVICTION_MIB = 100
# The kubelet's capacity is the memory the kernel reports, less than the machine's size;
# Karpenter (which sizes nodes for EKS) assumes 7.5 % (its vmMemoryOverheadPercent default).
KERNEL_OVERHEAD = 0.075
# Left for the system DaemonSets on every node (kube-proxy, CNI, logging, metadata server,
# NVIDIA device plugin, ...): their requests vary by cluster; this is an allowance, not a
# measurement. Check `kubectl describe node` on a real node.
DAEMONSET_CPU_M, DAEMONSET_MIB = 500, 1024


@dataclass(frozen=True)
class NodeType:
    name: str
    vcpus: int
    memory_mib: int  # the machine's size
    gpus: int
    eks_max_pods: int | None = None  # EKS: memory reservation depends on it; None: GKE

    def allocatable(self) -> tuple[float, float]:
        """(millicores, MiB) the scheduler can hand to pods."""
        cpu = self.vcpus * 1000 - _tiered(self.vcpus * 1000, CPU_TIERS)
        if self.eks_max_pods is None:
            reserved = _tiered(self.memory_mib, GKE_MEMORY_TIERS)
        else:  # nodeadm getMemoryMebibytesToReserve: 11 MiB per pod + 255 MiB
            reserved = 11 * self.eks_max_pods + 255
        return cpu, self.memory_mib * (1 - KERNEL_OVERHEAD) - reserved - EVICTION_MIB


def _tiered(total: float, tiers: list[tuple[float, float]]) -> float:
    """Sum of fraction x the part of ``total`` in each tier (tiers: (upper bound, fraction))."""
    reserved, lower = 0.0, 0.0
    for upper, fraction in tiers:
        reserved += fraction * max(0.0, min(total, upper) - lower)
        lower = upper
    return reserved


# Machine sizes: Compute Engine machine types (memoryMb) and EC2 instance types. EKS max
# pods: amazon-eks-ami nodeadm, ENIs x (IPv4 per ENI - 1) + 2 = 4 x 14 + 2 for both.
HEAD_NODES = [
    NodeType("e2-standard-4", 4, 16384, 0),
    NodeType("m5.xlarge", 4, 16384, 0, eks_max_pods=58),
]
GPU_NODES = [
    NodeType("g5.xlarge", 4, 16384, 1, eks_max_pods=58),
    NodeType("n1-standard-4", 4, 15360, 1),
    NodeType("g2-standard-4", 4, 16384, 1),
]


def _quantity(value: str | int, unit: str) -> float:
    """A Kubernetes quantity in millicores (unit "m") or MiB (unit "Mi")."""
    m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi)?", str(value))
    assert m, value
    number, suffix = float(m.group(1)), m.group(2) or ""
    if unit == "m":
        return number if suffix == "m" else number * 1000
    return number * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[suffix]


@pytest.mark.parametrize("group, node", [("head", n) for n in HEAD_NODES] + [("gpu-workers", n) for n in GPU_NODES],
                         ids=lambda x: getattr(x, "name", x))
def test_pod_requests_fit_the_node_types_the_docs_name(rayjob, group, node):
    requests = _container(_groups(rayjob)[group])["resources"]["requests"]
    cpu, memory = node.allocatable()
    assert _quantity(requests["cpu"], "m") + DAEMONSET_CPU_M <= cpu, (requests, node.allocatable())
    assert _quantity(requests["memory"], "Mi") + DAEMONSET_MIB <= memory, (requests, node.allocatable())
    assert int(requests.get("nvidia.com/gpu", 0)) <= node.gpus
    # and the docs say it: the node type is in the README's table with these figures
    row = next(line for line in README.read_text().splitlines() if line.startswith(f"| {'head' if group == 'head' else 'GPU worker'} |"))
    assert f"`{node.name}`{' + T4' if node.name == 'n1-standard-4' else ''} ({cpu / 1000:.2f} CPU, ~{memory / 1024:.1f} GiB)" in row


def test_gpu_worker_holds_four_trials_per_gpu(rayjob):
    """Ray counts the worker's CPUs from num-cpus, not from the (smaller) pod request:
    4 trials of --cpus-per-trial 1 at --gpus-per-trial 0.25 fit one 1-GPU worker."""
    group = _groups(rayjob)["gpu-workers"]
    args = parse_run(shlex.split(rayjob["spec"]["entrypoint"]))
    trials = int(1 / args.gpus_per_trial) * _container(group)["resources"]["limits"]["nvidia.com/gpu"]
    assert int(group["rayStartParams"]["num-cpus"]) >= trials * args.cpus_per_trial
