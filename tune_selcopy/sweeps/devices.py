"""Which device a trial's resource share means, inside its Ray worker.

A trial without a GPU share trains on the CPU. A trial with one trains on the GPU Ray
assigned it, after a small convolution forward and backward there proves that this torch
build can use it (a CPU-only wheel, a driver too old for the wheel's CUDA, an architecture
the wheel was not built for all show up here, not after three retries). If it cannot, the
trial stops with one line saying what it holds, what torch sees and the likely cause,
instead of training on the CPU while holding the GPU. GPUs declared for testing
(``--local-gpus``, ``ray start --num-gpus`` on a CPU machine) are allowed explicitly: with
``logical_gpus`` a trial whose share torch cannot use trains on the CPU (one it can use, on the GPU).
"""

from __future__ import annotations

import os

import ray
import torch

from tune_selcopy.errors import UserError, one_line
from tune_selcopy.science.trial import cap_cuda_memory

VISIBLE = "CUDA_VISIBLE_DEVICES"


class GpuUnusable(UserError):
    """A trial holds a GPU share that torch cannot use: no retry on this node can fix it."""


def gpu_index(ray_gpu_ids: list, visible: str | None) -> int:
    """The torch device index of the one GPU Ray assigned this worker.

    Ray names GPUs as ``CUDA_VISIBLE_DEVICES`` did when the node started, and by default
    sets it in each worker to the assigned GPU alone (torch's device 0). With
    ``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES`` it leaves the variable as it was, so the
    GPU is at its id's place in that list (or at the id itself when the list is unset).
    """
    if len(ray_gpu_ids) != 1:
        raise GpuUnusable(f"a trial uses one GPU, but Ray assigned this one GPUs {ray_gpu_ids}")
    gpu = str(ray_gpu_ids[0])
    if not visible:
        return int(gpu)
    entries = [entry.strip() for entry in visible.split(",")]
    if gpu not in entries:
        raise GpuUnusable(f"Ray assigned GPU {gpu}, which {VISIBLE}={visible} does not list")
    return entries.index(gpu)


def cuda_problem(index: int) -> str | None:
    """Why torch cannot train on ``cuda:index`` (what it sees and the likely cause), or
    None when a small convolution runs forward and backward there."""
    build = f"torch {torch.__version__}"
    if torch.version.cuda is None:
        return f"{build} is a CPU-only build (install a CUDA build of torch on this node)"
    count = torch.cuda.device_count()
    if count == 0:
        return (f"{build} (CUDA {torch.version.cuda}) sees no CUDA device (no NVIDIA driver, one too old for "
                f"CUDA {torch.version.cuda}, or {VISIBLE}={os.environ.get(VISIBLE)!r} hides the GPU)")
    if index >= count:
        return f"{build} sees {count} CUDA device(s), not device {index} ({VISIBLE}={os.environ.get(VISIBLE)!r})"
    try:
        device = torch.device("cuda", index)
        inputs = torch.ones(1, 2, 8, device=device, requires_grad=True)
        torch.nn.functional.conv1d(inputs, torch.ones(2, 2, 3, device=device)).sum().backward()
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - whatever CUDA raises, the trial cannot use this GPU
        return (f"{build} (CUDA {torch.version.cuda}) cannot run a convolution on cuda:{index} "
                f"({_describe(index)}): {one_line(exc, 200)} (a build without kernels for this GPU, or a driver "
                "too old for it)")
    return None


def _describe(index: int) -> str:
    """``NVIDIA A10G, sm_86``, or what describing it raised (CUDA may be broken)."""
    try:
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)}, sm_{major}{minor}"
    except Exception as exc:  # noqa: BLE001
        return f"not describable: {one_line(exc, 80)}"


def trial_device(gpus_per_trial: float, logical_gpus: bool) -> str:
    """``cpu`` for a trial without a GPU share or on GPUs declared for testing, else
    ``cuda:N``, the GPU Ray assigned, capped at the share's fraction of its memory.

    ``GpuUnusable`` (one line) when the trial holds a share torch cannot use.
    """
    if gpus_per_trial <= 0:
        return "cpu"
    ids = ray.get_gpu_ids()
    index = gpu_index(ids, os.environ.get(VISIBLE))
    problem = cuda_problem(index)
    if problem is None:
        # Ray's fractions are admission control only; this makes the share a real cap.
        cap_cuda_memory(gpus_per_trial, index)
        return f"cuda:{index}"
    if logical_gpus:
        return "cpu"
    raise GpuUnusable(
        f"this trial holds {gpus_per_trial:g} GPU (Ray GPU {ids[0]}) but {problem}; "
        "if this cluster's GPUs are declared for testing on a CPU machine, run with --logical-gpus"
    )
