"""bench/gpu_check.py, the one-shot check for a GPU machine, runs here on the CPU with tiny
sizes, so it cannot rot before a GPU runs it: every check and a throughput row of each
kind, without Ray (a GPU machine may have nothing but torch and this checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_the_cpu_without_ray(tmp_path):
    # A `ray` that cannot be imported comes first on the path of the check and its workers.
    blocker = tmp_path / "no_ray" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('Ray is not installed on a bare GPU machine')\n")
    out_file = tmp_path / "check.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--quick", "--out", str(out_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(blocker.parent)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out_file.read_text()
    assert all(line in result.stdout for line in report.splitlines())  # printed as written
    for check in ("CPU vs device, one seed", "checkpoint save/load/resume", "per-process memory cap", "seed stack"):
        assert f"| {check} | ok |" in report, check
    assert "batches bitwise equal: True" in report and "AdamW step counters on ['cpu']" in report
    assert "it stopped alone (True)" in report
    assert "| eager | 2 | 1 | conv |" in report and "| stack | 1 | 2 | off |" in report
    assert "0 failed" in report and "FAILED" not in report
