"""A GPU node's setup check: can torch train on this node's GPU?

The launcher configs run it as the last setup command of every GPU worker
(``python /home/ray/tune_selcopy/cluster/check_gpu.py``). It runs a tiny dilated
Conv1d, the model's building block, forward and backward on ``cuda``. A missing or too
old driver, a torch build for another CUDA, a cuDNN that cannot load, or a GPU
architecture the build has no kernels for fails here, on the node, with one line and
exit status 1; Ray then marks the node's setup failed (``ray monitor`` shows the line)
instead of a trial failing, retried three times, or training on the CPU while it holds
a GPU share. It needs torch only: it runs before anything else is imported.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")  # written by the NVIDIA kernel module


def driver_version() -> str:
    """The NVIDIA driver version on this machine, or why there is none."""
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", DRIVER_VERSION_FILE.read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:  # containers without /proc/driver/nvidia still get nvidia-smi from the NVIDIA runtime
        answer = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=60)
        if answer.returncode == 0 and answer.stdout.strip():
            return answer.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "none found (no NVIDIA kernel module, no nvidia-smi)"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def train_step_on_cuda() -> str:
    """Forward and backward of a tiny dilated Conv1d on cuda; the device's name."""
    import torch

    with warnings.catch_warnings(record=True) as caught:  # torch explains an old driver in a warning
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if not available:
        reasons = "; ".join(one_line(w.message) for w in caught)
        raise RuntimeError("torch sees no CUDA device" + (f" ({reasons})" if reasons else ""))
    conv = torch.nn.Conv1d(8, 16, kernel_size=3, dilation=2, padding=2).cuda()
    x = torch.randn(2, 8, 32, device="cuda", requires_grad=True)  # [B, C, L]
    conv(x).square().mean().backward()
    torch.cuda.synchronize()
    if x.grad is None or not torch.isfinite(x.grad).all():
        raise RuntimeError("the backward pass gave no finite gradient")
    return torch.cuda.get_device_name()


def main() -> int:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 (a broken install must fail the node with its cause)
        print(f"error: GPU check failed: cannot import torch: {one_line(exc)}; driver {driver_version()}",
              file=sys.stderr)
        return 1
    build = (f"built for CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if torch.version.cuda
             else "a CPU-only build")
    stack = f"torch {torch.__version__} ({build}), driver {driver_version()}"
    try:
        device = train_step_on_cuda()
    except Exception as exc:  # noqa: BLE001 (whatever the GPU stack raises, say it in one line)
        print(f"error: GPU check failed: {one_line(exc)[:400]}; {stack}", file=sys.stderr)
        return 1
    print(f"GPU check passed on {device}: a Conv1d forward and backward ran on cuda; {stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
