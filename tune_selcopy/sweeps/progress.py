"""Progress while a sweep runs: every 30 s one line of counts and a table of the trials that
fits 100 columns (Ray's own table adds a process address and full trainable names, and
runs to ~150).

Running trials come first, then failed ones, then the latest finished; the rest are
counted. The validation sample error and loss are a stack's means over its seeds.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ray import tune
from tabulate import tabulate

ORDER = ("RUNNING", "ERROR", "TERMINATED", "PAUSED", "PENDING")  # what a row shows first
MAX_ROWS = 20


def _seeds(config: dict[str, Any]) -> str:
    seeds = config.get("seeds") or [config.get("seed")]
    return ",".join(map(str, seeds)) if len(seeds) <= 3 else f"{seeds[0]}-{seeds[-1]}"


def _number(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, int | float) and math.isfinite(value) else ""


def progress_table(trials: Sequence[Any], columns: Sequence[str], max_rows: int = MAX_ROWS) -> str:
    """The counts line and the table of ``trials`` (Tune's Trial objects: ``trial_id``,
    ``status``, ``config``, ``last_result``); ``columns`` are the space's setting keys."""
    counts = Counter(trial.status for trial in trials)
    done = counts["TERMINATED"]
    line = (f"progress: {done} of {len(trials)} trials done, {counts['RUNNING']} running, {counts['PENDING']} "
            f"pending" + (f", {counts['ERROR']} failed" if counts["ERROR"] else ""))
    shown = [t for t in trials if t.status != "PENDING"]
    shown.sort(key=lambda t: (ORDER.index(t.status) if t.status in ORDER else len(ORDER),
                              -(t.last_result or {}).get("num_inputs", 0)))
    rows = []
    for trial in shown[:max_rows]:
        config, result = trial.config.get("trial", {}), trial.last_result or {}
        rows.append([
            trial.trial_id,
            " ".join(str(config.get(key, "")) for key in columns),
            _seeds(config),
            trial.status.lower(),
            _number(result.get("num_inputs"), ","),
            _number(result.get("validation_sample_error%"), ".3g"),
            _number(result.get("validation_loss"), ".3g"),
            _number(result.get("throughput"), ",.0f"),
        ])
    if not rows:
        return line
    table = tabulate(rows, headers=["trial", " ".join(columns), "seed", "status", "inputs", "val err%",
                                    "val loss", "inputs/s"], tablefmt="simple", disable_numparse=True,
                     colalign=("left",) * 4 + ("right",) * 4)
    more = len(shown) - len(rows)
    return "\n".join([line, table, *([f"... and {more} more"] if more else [])])


class SweepProgress(tune.ProgressReporter):
    """Tune's reporter hook: ``progress_table`` every ``every_s`` seconds and at the end."""

    def __init__(self, columns: Sequence[str], every_s: float = 30.0):
        self.columns, self.every_s = list(columns), every_s
        self._last = -math.inf

    def should_report(self, trials: list, done: bool = False) -> bool:
        return done or time.monotonic() - self._last >= self.every_s

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        self._last = time.monotonic()
        print(progress_table(trials, self.columns), flush=True)
