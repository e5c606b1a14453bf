"""The commands as a newcomer meets them: one installed ``tune-selcopy`` command (and
``python -m``), and ``--help`` texts that say what each does, every default, examples and
the exit codes."""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tune_selcopy import analyze, data, run, train
from tune_selcopy.errors import HelpFormatter
from tune_selcopy.sweeps.space_sources import available_spaces, load_space

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "attn_act-5seeds.parquet"
# the command's parser, built as the installed command builds it
PARSERS = {
    "run": run.build_parser,
    "analyze": analyze._parser,
    "train": train.build_parser,
    "data": data.build_parser,
}


def installed() -> str:
    """The ``tune-selcopy`` script pip installed next to this interpreter."""
    found = shutil.which("tune-selcopy", path=os.path.dirname(sys.executable))
    assert found, "tune-selcopy is not installed: pip install -e . ([project.scripts] in pyproject.toml)"
    return found


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([installed(), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def parsers(name: str) -> list[argparse.ArgumentParser]:
    """A command's parser and those of its subcommands."""
    parser = PARSERS[name](f"tune-selcopy {name}")
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *(p for sub in subs for p in sub.choices.values())]


def test_the_installed_command_runs_each_command():
    result = command("data", "validation", "--count", "2")
    assert result.returncode == 0 and result.stdout.splitlines() == ["XBFVU:3>4 1>4 1>2:BFVXU", "QHGYE:4>5 3>1 3>2:GQHEY"]
    result = command("--help")
    assert result.returncode == 0
    assert all(f"  {name} " in result.stdout for name in PARSERS)
    nothing = command()
    assert nothing.returncode == 2 and nothing.stdout == "" and "commands:" in nothing.stderr
    unknown = command("bogus")
    assert unknown.returncode == 2 and unknown.stderr == (
        "error: unknown command 'bogus': use run, analyze, train, data (see tune-selcopy --help)\n")
    # a command's own errors name the command as it was typed
    bad = command("run", "--bogus")
    assert bad.returncode == 2 and bad.stderr == "error: unrecognized arguments: --bogus (see tune-selcopy run --help)\n"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_python_m_keeps_working(name):
    for argv in ([sys.executable, "-m", f"tune_selcopy.{name}", "--help"],
                 [sys.executable, "-m", "tune_selcopy", name, "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0 and result.stdout.startswith("usage: "), result.stderr[-2000:]
    assert f"usage: python -m tune_selcopy.{name} " in subprocess.run(
        [sys.executable, "-m", f"tune_selcopy.{name}", "--help"], capture_output=True, text=True, cwd=ROOT).stdout


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_says_what_defaults_examples_and_exit_codes(name):
    for parser in parsers(name):
        text = parser.format_help()
        assert "``" not in text and ":py" not in text, text  # no raw markup
        description = " ".join(parser.description.split())
        assert len(description) > 60 and description.endswith("."), description  # a whole description
        examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
        assert sum(line.startswith(f"  tune-selcopy {name} ") for line in examples.splitlines()) >= 2, examples
        codes = text.split("exit codes:\n", 1)[1]
        assert "  0 " in codes and "  2 " in codes
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            shown = HelpFormatter(parser.prog)._get_help_string(action) or ""
            assert "default" in shown, f"{parser.prog} {action.option_strings[0]}: {shown!r}"


def test_train_help_names_every_option():
    text = train.build_parser().format_help()
    for option, words in {"--seed": "initial weights", "--max-inputs": "training inputs", "--val-count": "first N",
                          "--warmup-steps": "warm-up"}.items():
        entry = text.split(f"  {option} ", 1)[1].split("\n  --", 1)[0]
        assert words in " ".join(entry.split()) and "(default: " in entry, entry


def test_run_without_a_space_lists_the_spaces(capsys):
    assert run.main([]) == 2
    out, err = capsys.readouterr()
    for name in available_spaces():
        space = load_space(name).resolve()
        lines = out.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith(f"  {name} "))
        rest = itertools.takewhile(lambda line: line.startswith(" " * 40), lines[first + 1:])  # wrapped
        entry = " ".join([lines[first], *rest])
        assert f"{len(space.settings)} settings x {space.seeds:>2} seeds" in entry
        assert " ".join(entry.split()).endswith(space.description)
    assert max(map(len, out.splitlines())) <= 100
    assert "search_spaces/attn_invent_small.yaml" in out
    assert err == "error: give a SPACE to run: one of the spaces above, or a .yaml space file\n"


def test_analyze_through_the_dispatcher_loads_neither_torch_nor_ray():
    code = (
        "import sys; from tune_selcopy.__main__ import main; "
        f"rc = main(['analyze', {str(EXAMPLE)!r}, '--format', 'csv']); "
        "print('RESULT', rc, [m for m in ('torch', 'ray') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.stdout.splitlines()[-1] == "RESULT 0 []", result.stderr[-2000:]
