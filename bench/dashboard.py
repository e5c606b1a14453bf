"""What the embedded Ray's dashboard costs (``run --dashboard``): start-up time and memory of
the embedded Ray with and without it, started as the sweep starts it
(``sweeps.cluster.connect``), alternating, each in a fresh process.

    .venv/bin/python bench/dashboard.py [--rounds 5]

Prints the median start-up seconds (``connect`` returning) and the resident memory of the
Ray processes once started, per variant, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, os, sys, time
from tune_selcopy.sweeps.cluster import connect
dashboard = sys.argv[1] == "1"
started = time.perf_counter()
said = connect(None, {"CPU": 2.0, "GPU": 0.0}, dashboard)
seconds = time.perf_counter() - started

def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out

def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

time.sleep(3)  # let the dashboard's processes settle
memory = sum(rss_mb(p) for p in descendants(os.getpid()))
print(json.dumps({"seconds": seconds, "memory_mb": memory, "said": said.splitlines()[-1]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    found: dict[str, list[dict]] = {"without": [], "with": []}
    for _ in range(rounds):
        for name, flag in (("without", "0"), ("with", "1")):
            out = subprocess.run([sys.executable, "-c", PROBE, flag], capture_output=True, text=True, cwd=ROOT,
                                 check=True, timeout=300)
            found[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; {rounds} rounds, alternating")
    for name, runs in found.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        memory = statistics.median(r["memory_mb"] for r in runs)
        each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        print(f"{name:>8} dashboard: start-up {seconds:5.2f} s (median of {each}), Ray's processes {memory:,.0f} MB")
    ratio = statistics.median(r["seconds"] for r in found["with"]) / statistics.median(
        r["seconds"] for r in found["without"])
    print(f"with / without: {ratio:.2f}x start-up; the dashboard said: {found['with'][-1]['said']}")


if __name__ == "__main__":
    main()
