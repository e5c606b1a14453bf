"""A one-shot check of this package on a GPU: every CUDA path once, then throughput.

    python bench/gpu_check.py                       # on a GPU machine: ~5-8 minutes
    python bench/gpu_check.py --device cpu --quick  # the same code paths in seconds (a test)

Needs only torch (and numpy) and this checkout: no Ray, nothing installed. It runs from the
repository folder as it is (the package is imported from here), so a bare machine with a
CUDA build of torch can run it.

Checks (each passes or fails, with its figures):
- CPU vs GPU: one seed trained on the CPU and on the device (TF32 off) sees bitwise the
  same batches, and its metrics agree to float32 rounding;
- checkpoint save, load and resume on the device; after the load AdamW's step counters
  are on the CPU and a training step makes no host sync (CUDA's sync debug mode);
- the per-process memory cap: an allocation above the capped share fails;
- a stack of 3 seeds matches 3 separate trials (float64) for a linear-attention and a
  multi-head setting, and a seed turned NaN leaves the other seeds' rows as they were.

Throughput (samples/s, per seed and in total, the trials' own train-time figures, data
drawing included, validation excluded; each process caps its memory to 1/P of the GPU as a
Ray trial with a 1/P share would): one seed per process in 1, 4, 8 and 16 processes at
once; stacks of 5, 10, 20 and 40 seeds in 1 and 4 processes; TF32 off and all. A
deadline (--budget) skips what would run late, and says so. The table goes to stdout and
to --out (Markdown).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tune_selcopy.science.task import stacked_batches  # noqa: E402
from tune_selcopy.science.trial import (  # noqa: E402
    DEFAULT_TF32,
    Trial,
    TrialConfig,
    cap_cuda_memory,
    run_environment,
)

LINEAR = {"attn": (0, 0, True), "qkv": "QK", "attnact": "elu+1"}  # attn_act's setting
HEADS = {"attn": (0, 0, 8), "qkv": "QKV"}  # attn_invent's most stable multi-head setting
METRICS = [f"{s}_{m}" for s in ("train", "validation") for m in ("loss", "error%", "mask_error%", "sample_error%")]


# A throughput row: (what, processes at once, seeds per process, TF32 mode, setting)
Row = tuple[str, int, int, str, dict[str, Any]]
FULL_ROWS: list[Row] = [
    *(("eager", p, 1, DEFAULT_TF32, LINEAR) for p in (1, 4, 8, 16)),
    *(("stack", p, k, DEFAULT_TF32, LINEAR) for p in (1, 4) for k in (5, 10, 20, 40)),
    ("stack, 0,0,8 QKV", 1, 10, DEFAULT_TF32, HEADS),
    *(("eager", 1, 1, mode, LINEAR) for mode in ("off", "all")),
    *(("stack", 1, 10, mode, LINEAR) for mode in ("off", "all")),
]


@dataclass(frozen=True)
class Plan:
    """How big each part is: the full check on a GPU, or --quick."""

    steps: int = 20  # training steps of each correctness check (two epochs)
    val_count: int = 200
    epoch_inputs: int = 6_400  # inputs per epoch of a throughput measurement, per seed
    seconds: float = 8.0  # measured time per throughput measurement, after a warm-up epoch
    rows: tuple[Row, ...] = tuple(FULL_ROWS)


# The same code paths, tiny: processes at once, a stack, a TF32 mode other than the default.
QUICK = Plan(steps=2, val_count=10, epoch_inputs=128, seconds=0.3,
             rows=(("eager", 2, 1, DEFAULT_TF32, LINEAR), ("stack", 1, 2, "off", LINEAR)))


def config(setting: dict[str, Any], steps: int, val_count: int, epochs: int = 2) -> TrialConfig:
    """``steps`` training steps of 64 in ``epochs`` epochs, validating ``val_count`` samples."""
    return TrialConfig(**setting, max_inputs=64 * steps, num_validations=epochs, val_count=val_count)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


class Recorded(Trial):
    """A trial that keeps its training batches (on the CPU), to compare streams."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batches: list[torch.Tensor] = []

    def train_step(self, inputs, targets, widths=None, stats=True):  # type: ignore[override]
        self.batches.append(inputs.cpu())
        super().train_step(inputs, targets, widths, stats)


# --- checks ------------------------------------------------------------------------------


def check_cpu_vs_device(device: str, plan: Plan) -> tuple[bool, str]:
    cfg = config(LINEAR, plan.steps, plan.val_count)
    cpu = Recorded(cfg, "cpu", threads=1)
    cpu.run()
    dev = Recorded(cfg, device, tf32="off")
    dev.run()
    same_data = len(cpu.batches) == len(dev.batches) and all(map(torch.equal, cpu.batches, dev.batches))
    worst = max(relative(d[m], c[m]) for c, d in zip(cpu.history[0], dev.history[0]) for m in METRICS
                if m.endswith("_loss"))
    return same_data and worst < 1e-3, (f"{len(cpu.batches)} batches bitwise equal: {same_data}; "
                                        f"losses agree to {worst:.1e} relative")


def check_resume(device: str, plan: Plan) -> tuple[bool, str]:
    cfg = config(LINEAR, plan.steps, plan.val_count)
    whole = Trial(cfg, device)
    whole.run()
    first = Trial(cfg, device)
    next(first.validations())
    with tempfile.TemporaryDirectory() as folder:
        first.save(folder)
        second = Trial(cfg, device)
        second.load(folder)
    steps_on = {second.optimizer.state[p]["step"].device.type for p in second.net.parameters()}
    sync = "not checked (no CUDA)"
    if second.device.type == "cuda":
        samples = second.streams[0].epoch(99, cfg.batch_size)
        inputs, targets, widths = next(stacked_batches([samples], cfg.batch_size, device=second.device))
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any host sync in a step raises
        try:
            second.train_step(inputs, targets, widths)
            sync = "none"
        except RuntimeError as exc:
            sync = f"FOUND: {str(exc).splitlines()[0][:120]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        second.load_state_dict(first.state_dict())  # undo that step
    second.run()
    worst = max(relative(r[m], w[m]) for r, w in zip(second.history[0], whole.history[0]) for m in METRICS
                if m.endswith("_loss"))
    ok = steps_on == {"cpu"} and sync in ("none", "not checked (no CUDA)") and worst < 1e-4
    return ok, (f"AdamW step counters on {sorted(steps_on)}; host syncs in a step after the load: {sync}; "
                f"resumed losses agree with the uninterrupted run to {worst:.1e} (bitwise: {worst == 0})")


def check_memory_cap(device: str) -> tuple[bool, str]:
    if not device.startswith("cuda"):
        return True, "skipped (no CUDA)"
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import torch\n"
        "from tune_selcopy.science.trial import cap_cuda_memory\n"
        "total = torch.cuda.get_device_properties(0).total_memory\n"
        "small = torch.empty(int(0.1 * total) // 4, dtype=torch.float32, device='cuda')\n"
        "cap_cuda_memory(0.25)\n"
        "try:\n"
        "    big = torch.empty(int(0.3 * total) // 4, dtype=torch.float32, device='cuda')\n"
        "    print('allocated 30% under a 25% cap')\n"
        "except torch.cuda.OutOfMemoryError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    ok = out.stdout.strip() == "refused"
    return ok, f"30% of the GPU under a 25% cap: {out.stdout.strip() or out.stderr.strip()[-200:]}"


def check_stack(device: str, plan: Plan) -> tuple[bool, str]:
    details, ok = [], True
    for name, setting in (("0,0,T QK", LINEAR), ("0,0,8 QKV", HEADS)):
        cfg = config(setting, plan.steps, plan.val_count)
        stack = Trial(cfg, device, seeds=(1, 2, 3), dtype=torch.float64, tf32="off")
        stack.run()
        worst_p = worst_m = 0.0
        for k, seed in enumerate((1, 2, 3)):
            alone = Trial(cfg, device, seeds=(seed,), dtype=torch.float64, tf32="off")
            alone.run()
            for pname, param in alone.net.params.items():
                worst_p = max(worst_p, ((stack.net.params[pname][k] - param).norm() / param.norm()).item())
            for a, b in zip(stack.history[k], alone.history[0]):
                worst_m = max([worst_m, *(relative(a[m], b[m]) for m in METRICS if b[m])])
        ok &= worst_p <= 1e-7 and worst_m <= 1e-7
        details.append(f"{name} float64 stack of 3 vs alone: params {worst_p:.1e}, metrics {worst_m:.1e}")
    cfg = config(LINEAR, plan.steps, plan.val_count)
    clean = Trial(cfg, device, seeds=(1, 2, 3))
    clean.run()
    poisoned = Trial(cfg, device, seeds=(1, 2, 3))
    with torch.no_grad():
        poisoned.net.seed_tensor(poisoned.net.params["embedding.weight"], 1).fill_(float("nan"))
    poisoned.run()
    worst = max(relative(a[m], b[m]) for k in (0, 2) for a, b in zip(poisoned.history[k], clean.history[k])
                for m in METRICS if b[m])
    stopped = poisoned.diverged[1] is not None and poisoned.diverged[0] is None and poisoned.diverged[2] is None
    ok &= stopped and worst < 1e-4
    details.append(f"seed 2 turned NaN: it stopped alone ({stopped}); seeds 1 and 3 agree with a clean stack "
                   f"to {worst:.1e}")
    return ok, "; ".join(details)


# --- throughput --------------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> None:
    """One measuring process: warm up one epoch, say ready, wait for go, train for
    ``seconds``, print its figures as JSON."""
    device, processes, seeds = spec["device"], spec["processes"], spec["seeds"]
    signal.alarm(int(spec["seconds"]) + 300)  # a stuck worker ends; its row then says FAILED
    if device.startswith("cuda"):
        cap_cuda_memory(1.0 / processes)
    epochs = 10_000
    cfg = TrialConfig.from_dict({**spec["setting"], "max_inputs": spec["epoch_inputs"] * epochs,
                                 "num_validations": epochs, "val_count": spec["val_count"]})
    trial = Trial(cfg, device, threads=spec["threads"], seeds=range(1, seeds + 1), tf32=spec["tf32"])
    validations = trial.validations()
    next(validations)  # the first epoch loads kernels and fills caches: not measured
    print("ready", flush=True)
    sys.stdin.readline()
    inputs0, time0 = trial.num_inputs, trial.train_time_s
    start = time.perf_counter()
    while time.perf_counter() - start < spec["seconds"]:
        next(validations)
    per_seed = (trial.num_inputs - inputs0) / (trial.train_time_s - time0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    print(json.dumps({"per_seed": per_seed, "total": per_seed * seeds, "peak_mib": peak}), flush=True)


def measure(device: str, plan: Plan, processes: int, seeds: int, tf32: str = DEFAULT_TF32,
            setting: dict[str, Any] = LINEAR, threads: int = 1) -> dict[str, float]:
    """Start ``processes`` workers (``threads`` CPU threads each), let them all warm up,
    then measure them at once."""
    spec = {"device": device, "processes": processes, "seeds": seeds, "tf32": tf32, "setting": setting,
            "epoch_inputs": plan.epoch_inputs, "val_count": plan.val_count, "seconds": plan.seconds,
            "threads": threads}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    try:
        for w in workers:
            line = w.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a worker did not start: {line!r} (exit {w.wait()})")
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [json.loads(w.stdout.readline()) for w in workers]
    finally:
        for w in workers:
            with contextlib.suppress(OSError):
                w.stdin.close()
            w.wait(timeout=120)
    return {
        "per_seed": sum(r["per_seed"] for r in results) / len(results),
        "total": sum(r["total"] for r in results),
        "peak_mib": max(r["peak_mib"] for r in results),
    }


# --- the report --------------------------------------------------------------------------


def run_all(device: str, plan: Plan, budget_s: float) -> str:
    started = time.monotonic()
    env = run_environment(torch.device(device))
    lines = [
        f"# GPU check: {env['device_name']} ({device})",
        "",
        f"torch {env['torch_version']}, CUDA {env['cuda_version']}, cuDNN {env['cudnn_version']}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        "| check | result | figures |",
        "|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    failed = 0
    for name, check in (
        ("CPU vs device, one seed", lambda: check_cpu_vs_device(device, plan)),
        ("checkpoint save/load/resume", lambda: check_resume(device, plan)),
        ("per-process memory cap", lambda: check_memory_cap(device)),
        ("seed stack", lambda: check_stack(device, plan)),
    ):
        t0 = time.monotonic()
        try:
            ok, figures = check()
        except Exception as exc:  # noqa: BLE001 - a failed check is a row, the rest still runs
            ok, figures = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        failed += not ok
        lines.append(f"| {name} | {'ok' if ok else 'FAILED'} | {figures} ({time.monotonic() - t0:.0f} s) |")
        print(lines[-1], flush=True)
    lines += ["", "Throughput, samples/s (setting 0,0,T QK elu+1 unless named; TF32 "
              f"{DEFAULT_TF32} unless named; {plan.seconds:g} s measured per row after a warm-up epoch):", "",
              "| trials | processes | seeds per process | TF32 | per seed | total | peak MiB per process |",
              "|---|--:|--:|---|--:|--:|--:|"]
    print("\n".join(lines[-4:]), flush=True)
    best = 0.0
    for kind, processes, seeds, tf32, setting in plan.rows:
        if time.monotonic() - started > budget_s:
            lines.append(f"| {kind} | {processes} | {seeds} | {tf32} | skipped: past the {budget_s:.0f} s budget | | |")
        else:
            try:
                got = measure(device, plan, processes, seeds, tf32, setting)
                best = max(best, got["total"])
                peak = f"{got['peak_mib']:,.0f}" if device.startswith("cuda") else "-"
                lines.append(f"| {kind} | {processes} | {seeds} | {tf32} | {got['per_seed']:,.0f} | "
                             f"{got['total']:,.0f} | {peak} |")
            except Exception as exc:  # noqa: BLE001
                failed += 1
                lines.append(f"| {kind} | {processes} | {seeds} | {tf32} | FAILED: {str(exc)[:150]} | | |")
        print(lines[-1], flush=True)
    if best:
        lines += ["", f"At the best total measured ({best:,.0f} samples/s), the attn_invent sweep (160 trials of "
                      f"1,000,000 inputs) would train in {160e6 / best / 60:.1f} minutes (a projection, not a run)."]
    lines += ["", f"{failed} failed; {time.monotonic() - started:.0f} s in all."]
    print("\n".join(lines[-3:]), flush=True)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the code paths only, in seconds")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds; throughput rows that would start later are skipped (default 420)")
    parser.add_argument("--out", default=None, help="Markdown file (default: gpu_check-<device>.md here)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: torch {torch.__version__} sees no CUDA device (use --device cpu)", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else Plan()
    report = run_all(args.device, plan, args.budget)
    out = Path(args.out or f"gpu_check-{args.device.replace(':', '')}.md")
    out.write_text(report)
    print(f"written: {out}")
    return 1 if " FAILED" in report else 0


if __name__ == "__main__":
    raise SystemExit(main())
