"""Try the unhappy paths of docs/reliability.md as a user would, from a shell, and time them.

    .venv/bin/python bench/unhappy_paths.py [--out FILE.md]

Each case runs the real command line in a child process and records the exit code, the
wall time and the error line on stderr, as a Markdown table (the figures behind
docs/reliability.md). Cases that need root (a tmpfs for a full or read-only
disk) are skipped without it. Takes a few minutes: the Ctrl-C and full-disk cases run
tiny real sweeps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = ["--trials", "1", "--max-inputs", "1280", "--val-count", "64"]


def command(*args: str) -> list[str]:
    return [PY, "-m", *args]


def finish(proc: subprocess.Popen, started: float) -> tuple[int, float, str]:
    _, err = proc.communicate(timeout=600)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    # Our one line (a hint may follow it), else whatever came last.
    ours = [line for line in lines if line.startswith(("error:", "interrupted"))]
    return proc.returncode, time.monotonic() - started, (ours or lines or [""])[-1]


def plain(argv: list[str]) -> Callable[[], tuple[int, float, str]]:
    def case() -> tuple[int, float, str]:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return finish(proc, started)

    return case


def wait_rows(logs: Path, count: int, proc: subprocess.Popen) -> None:
    while proc.poll() is None and not (logs.exists() and len(list(logs.glob("*/*.parquet"))) >= count):
        time.sleep(0.2)


def ctrl_c(store: Path) -> Callable[[], tuple[int, float, str]]:
    def case() -> tuple[int, float, str]:
        proc = subprocess.Popen(command("tune_selcopy.run", "attn_act", *TINY, "--storage", str(store), "--name", "cc"),
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_rows(store / "cc" / "logs", 2, proc)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        return finish(proc, started)

    return case


def full_disk(disk: Path) -> Callable[[], tuple[int, float, str]]:
    def case() -> tuple[int, float, str]:
        proc = subprocess.Popen(command("tune_selcopy.run", "attn_act", *TINY, "--storage", str(disk), "--name", "full"),
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_rows(disk / "full" / "logs", 1, proc)
        # suppress outermost: closing the filler flushes its last buffer into a full disk
        with contextlib.suppress(OSError), open("/dev/zero", "rb") as zeros, open(disk / "filler", "wb") as out:
            shutil.copyfileobj(zeros, out)  # take every byte that is left
        started = time.monotonic()
        return finish(proc, started)

    return case


def mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the table to this file")
    out = parser.parse_args().out
    work = Path(tempfile.mkdtemp(prefix="unhappy-", dir="/tmp"))
    store = work / "store"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]

    # Fixtures: a crafted checkpoint, a finished folder name, foreign/corrupt settings, a damaged state.
    crafted = work / "crafted"
    crafted.mkdir()

    class Payload:
        def __reduce__(self):
            return (Path.touch, (work / "PWNED",))

    torch.save({"config": Payload()}, crafted / "trial.pt")
    (store / "taken").mkdir(parents=True)
    (store / "taken" / "tune_selcopy.json").write_text("{}")
    (store / "corrupt").mkdir()
    (store / "corrupt" / "tune_selcopy.json").write_text('{"broken')
    a_file = work / "a_file"
    a_file.write_text("x")
    run = ("tune_selcopy.run", "attn_act")
    disk, ro = work / "disk", work / "ro"
    root_ok = mount_tmpfs(disk, "size=96m") and mount_tmpfs(ro, "ro,size=1m")

    cases: list[tuple[str, Callable[[], tuple[int, float, str]] | None]] = [
        ("crafted checkpoint (train --checkpoint-dir)",
         plain(command("tune_selcopy.train", "--max-inputs", "640", "--checkpoint-dir", str(crafted)))),
        ("--name of an existing sweep", plain(command(*run, *TINY, "--storage", str(store), "--name", "taken"))),
        ("Ctrl-C (SIGINT) during a sweep", ctrl_c(store)),
        ("storage fills up mid-sweep (96 MB tmpfs)", full_disk(disk) if root_ok else None),
        ("--storage gs:// without network", plain(command(*run, *TINY, "--storage", "gs://tune-selcopy/x"))),
        ("--address to a closed port", plain(command(*run, *TINY, "--address", f"127.0.0.1:{closed_port}"))),
        ("--name ../escape", plain(command(*run, *TINY, "--storage", str(store), "--name", "../escape"))),
        ("--storage under /proc", plain(command(*run, *TINY, "--storage", "/proc/x"))),
        ("--storage on a read-only filesystem",
         plain(command(*run, *TINY, "--storage", str(ro / "x"))) if root_ok else None),
        ("--storage s3:// without credentials", plain(command(*run, *TINY, "--storage", "s3://tune-selcopy/x"))),
        ("--address notahost", plain(command(*run, *TINY, "--address", "notahost"))),
        ("--local-cpus -2", plain(command(*run, *TINY, "--local-cpus", "-2"))),
        ("--local-gpus -1", plain(command(*run, *TINY, "--local-gpus", "-1"))),
        ("train --device banana", plain(command("tune_selcopy.train", "--device", "banana"))),
        ("train --seed -1", plain(command("tune_selcopy.train", "--seed", "-1"))),
        ("train --seed 10**22", plain(command("tune_selcopy.train", "--seed", str(10**22)))),
        ("train --checkpoint-dir that is a file",
         plain(command("tune_selcopy.train", "--max-inputs", "640", "--checkpoint-dir", str(a_file)))),
        ("--resume of a corrupt tune_selcopy.json",
         plain(command(*run, "--resume", "--name", "corrupt", "--storage", str(store)))),
        ("train --warmup-steps -5", plain(command("tune_selcopy.train", "--warmup-steps", "-5"))),
        ("--trials 0", plain(command(*run, "--trials", "0"))),
        ("--gpus-per-trial 1.5", plain(command(*run, "--gpus-per-trial", "1.5"))),
        ("--local-cpus 0", plain(command(*run, "--local-cpus", "0"))),
        ("--max-concurrent -1", plain(command(*run, "--max-concurrent", "-1"))),
        ("run --bogus (argparse)", plain(command(*run, "--bogus"))),
    ]
    rows = ["| case | exit | seconds | what it printed (stderr) |", "|---|---:|---:|---|"]
    try:
        for name, case in cases:
            if case is None:
                rows.append(f"| {name} | | | skipped: needs root to mount a tmpfs |")
                continue
            code, seconds, line = case()
            rows.append(f"| {name} | {code} | {seconds:.1f} | `{line[:160]}` |")
            print(rows[-1], flush=True)
    finally:
        for mount in (disk, ro):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    assert not (work / "PWNED").exists(), "the crafted checkpoint ran its payload"
    table = "\n".join(rows)
    print(f"\n{table}\n\n(load average at the end: {os.getloadavg()[0]:.1f})")
    if out:
        Path(out).write_text(table + "\n")


if __name__ == "__main__":
    main()
