"""``tune-selcopy COMMAND ...`` (also ``python -m tune_selcopy COMMAND ...``): one entry
point for the four commands. A command's module is imported only when it runs, so
``tune-selcopy analyze`` loads neither torch nor Ray."""

from __future__ import annotations

import importlib
import sys

PROG = "tune-selcopy"
COMMANDS = {
    "run": "run a search space as a Ray Tune sweep (this machine or a Ray cluster)",
    "analyze": "what a sweep's seeds support: tables, verdicts, reproduction checks, plots",
    "train": "train one trial without Ray",
    "data": "print the task's reference validation set",
}
USAGE = f"""\
usage: {PROG} COMMAND [OPTIONS]   (`{PROG} COMMAND --help` for each)

Ray Tune sweeps of the "very selective copying" attention experiments, and the statistics
that say which differences their seeds support.

commands:
{chr(10).join(f"  {name:<9} {what}" for name, what in COMMANDS.items())}

examples:
  {PROG} run attn_act --trials 2 --max-inputs 20000 --val-count 1000
  {PROG} analyze examples/attn_act-5seeds.parquet --reference attn_act
  {PROG} run attn_invent --dry-run

`python -m tune_selcopy.COMMAND` runs the same commands. Exit codes: 0 done, 1 some trials
of a sweep failed, 2 bad input (one "error: ..." line), 130 interrupted."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}: use {', '.join(COMMANDS)} (see {PROG} --help)", file=sys.stderr)
        return 2
    return importlib.import_module(f"tune_selcopy.{command}").main(rest, prog=f"{PROG} {command}")


if __name__ == "__main__":
    raise SystemExit(main())
