"""A trial that holds a GPU share trains on that GPU or stops the sweep in one line; it
never trains on the CPU silently, unless the GPUs were declared for testing.

The device checks run with torch.cuda replaced where a CUDA machine is needed; the
sweeps run on real Ray with a logical GPU on this CPU-only machine."""

from __future__ import annotations

import pandas as pd
import pytest
import ray
import torch

from tune_selcopy import run
from tune_selcopy.sweeps import devices, folder
from tune_selcopy.sweeps.devices import GpuUnusable, cuda_problem, gpu_index, trial_device

TINY = ["--trials", "1", "--max-inputs", "1280", "--val-count", "64"]


@pytest.mark.parametrize(
    "ids, visible, index",
    [
        ([0], "0", 0),  # Ray's default: the worker sees its GPU alone
        ([3], "3", 0),
        ([3], None, 3),  # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: every GPU visible
        ([3], "2,3", 1),  # ... and the node started with a list of its own
        (["GPU-5a1c"], "GPU-0b2d,GPU-5a1c", 1),  # GPUs named by UUID
    ],
)
def test_the_device_index_is_the_gpu_ray_assigned(ids, visible, index):
    assert gpu_index(ids, visible) == index


@pytest.mark.parametrize(
    "ids, visible, message",
    [
        ([0, 1], "0,1", r"a trial uses one GPU, but Ray assigned this one GPUs \[0, 1\]"),
        ([5], "0,1", "Ray assigned GPU 5, which CUDA_VISIBLE_DEVICES=0,1 does not list"),
    ],
)
def test_a_gpu_that_cannot_be_placed_is_one_line(ids, visible, message):
    with pytest.raises(GpuUnusable, match=message):
        gpu_index(ids, visible)


def test_what_torch_sees_and_the_likely_cause(monkeypatch):
    """This machine's torch is a CPU build; a CUDA build on a node without a driver, with
    fewer devices than Ray named, and with a device it cannot run on (the convolution
    really runs: a CPU build raises inside it)."""
    assert cuda_problem(0) == (f"torch {torch.__version__} is a CPU-only build (install a CUDA build of torch "
                               "on this node)")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert cuda_problem(0) == (f"torch {torch.__version__} (CUDA 13.0) sees no CUDA device (no NVIDIA driver, one "
                               "too old for CUDA 13.0, or CUDA_VISIBLE_DEVICES='0' hides the GPU)")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cuda_problem(1) == f"torch {torch.__version__} sees 1 CUDA device(s), not device 1 (CUDA_VISIBLE_DEVICES='0')"
    problem = cuda_problem(0)
    assert problem.startswith(f"torch {torch.__version__} (CUDA 13.0) cannot run a convolution on cuda:0 (")
    assert problem.endswith("(a build without kernels for this GPU, or a driver too old for it)")
    assert "\n" not in problem


def test_a_usable_gpu_is_the_assigned_one_capped_at_the_share(monkeypatch):
    capped = []
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [2])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "cuda_problem", lambda index: None)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device: capped.append((fraction, device)))
    assert trial_device(0.25, logical_gpus=False) == "cuda:2"
    assert capped == [(0.25, 2)]
    assert trial_device(0.0, logical_gpus=False) == "cpu"


def test_a_share_torch_cannot_use_stops_unless_declared_for_testing(monkeypatch):
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert trial_device(0.5, logical_gpus=True) == "cpu"
    with pytest.raises(GpuUnusable) as stop:
        trial_device(0.5, logical_gpus=False)
    assert str(stop.value) == (
        f"this trial holds 0.5 GPU (Ray GPU 0) but torch {torch.__version__} is a CPU-only build (install a CUDA "
        "build of torch on this node); if this cluster's GPUs are declared for testing on a CPU machine, run with "
        "--logical-gpus"
    )


def test_a_joined_cluster_with_logical_gpus_stops_in_one_line_until_declared(tmp_path, capsys):
    """A cluster that declares a GPU on this CPU machine (as `ray start --num-gpus 1` does):
    the sweep stops at the first trial with one line and exit 2, not after retries; resumed
    with --logical-gpus it trains on CPU, and the choice is saved for later resumes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    storage = str(tmp_path)
    try:
        code = run.main(["attn_act", *TINY, "--address", cluster.address, "--gpus-per-trial", "0.5",
                         "--storage", storage, "--name", "gpu"])
        captured = capsys.readouterr()
        assert code == 2
        error, hint = captured.err.strip().splitlines()[-2:]
        assert error.startswith("error: trial ") and (
            f": this trial holds 0.5 GPU (Ray GPU 0) but torch {torch.__version__} is a CPU-only build (install a "
            "CUDA build of torch on this node); if this cluster's GPUs are declared for testing on a CPU machine, "
            "run with --logical-gpus") in error
        assert hint == f"what was written is kept; continue with: python -m tune_selcopy.run --resume --name gpu --storage {storage}"
        failures = [line for line in captured.out.splitlines() if " failed (" in line]
        assert len(failures) == 1 and "failed (no retry can fix this): " in failures[0]  # the first ended it
        assert not folder.load_settings(storage, "gpu").logical_gpus

        ray.shutdown()  # main() leaves its driver connected, as a CLI process would until exit
        assert run.main(["--resume", "--name", "gpu", "--storage", storage, "--address", cluster.address,
                         "--logical-gpus"]) == 0
        out = capsys.readouterr().out
        assert "0.5 GPU (declared for testing: trains on CPU where torch has no GPU) per trial" in out
        assert "All 2 trials finished." in out
        assert folder.load_settings(storage, "gpu").logical_gpus
        assert set(pd.read_parquet(tmp_path / "gpu" / "logs")["device"]) == {"cpu"}
    finally:
        ray.shutdown()
        cluster.shutdown()
