"""Family-wise error rate and power of the verdict procedure, against the one before it.

For k identical settings (k = 2, 8, 16) of n seeds (5, 10) under three noises (normal,
skewed lognormal, and 69% ties at exactly 0), the share of simulated sweeps with any
false "different" verdict; then, with one setting worse by 2 noise standard deviations,
the share of sweeps in which it is called "different" (power). Each configuration is
simulated for both procedures on the same draws (``tune_selcopy.analysis.simulate``):

- ``all pairs``: this package's procedure (``tune_selcopy.analysis.evidence.compare_settings``:
  Mann-Whitney, Holm over all k(k-1)/2 pairs);
- ``before``: ``compare_to_best`` of ``tune_selcopy/analyze.py`` at git revision
  ``--baseline`` (Welch and Mann-Whitney both, Holm over the k-1 comparisons with the
  observed best), loaded from git history.

Usage: ``python bench/verdict_errors.py [--sweeps 1000] [--baseline 7fbe8d8]``. Prints a
Markdown table (rates in %, with the binomial standard error); docs/analysis.md records
the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tune_selcopy.analysis.simulate import NOISES, Rates, simulate  # noqa: E402


def baseline_procedure(rev: str):
    """``compare_to_best`` from tune_selcopy/analyze.py at git revision ``rev``."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:tune_selcopy/analyze.py"],
                            check=True, capture_output=True, text=True).stdout
    folder = tempfile.mkdtemp(prefix="baseline-")
    file = Path(folder) / "baseline_analyze.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_analyze", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module.compare_to_best


def cell(r: Rates, share: float) -> str:
    return f"{100 * share:.1f} ± {100 * r.stderr(share):.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweeps", type=int, default=1000, help="simulated sweeps per configuration")
    p.add_argument("--baseline", default="7fbe8d8", help="git revision of the procedure to compare with")
    p.add_argument("--shift", type=float, default=2.0, help="shift of the worse setting, in noise stds")
    args = p.parse_args()
    before = baseline_procedure(args.baseline)
    print(f"{args.sweeps} sweeps per cell; {platform.node()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; baseline {args.baseline}\n")
    print(f"| noise | k | seeds | false 'different', all pairs (%) | before (%) | power at {args.shift:g} std, "
          "all pairs (%) | before (%) | s |")
    print("|:--|--:|--:|--:|--:|--:|--:|--:|")
    for noise in NOISES.values():
        for k in (2, 8, 16):
            for n in (5, 10):
                start = time.perf_counter()
                null = [simulate(k, n, noise, args.sweeps), simulate(k, n, noise, args.sweeps, procedure=before)]
                shifted = [simulate(k, n, noise, args.sweeps, shift=args.shift),
                           simulate(k, n, noise, args.sweeps, shift=args.shift, procedure=before)]
                print(f"| {noise.name} | {k} | {n} | {cell(null[0], null[0].false_different)} | "
                      f"{cell(null[1], null[1].false_different)} | {cell(shifted[0], shifted[0].found)} | "
                      f"{cell(shifted[1], shifted[1].found)} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
