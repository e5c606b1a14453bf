"""Reading what cluster/ ships, for the tests: configs, version pins, and the commands
people are told to run.

A command is read from the text people copy it from (fenced ``bash`` blocks in
cluster/README.md, the comment block at the top of a config file), split the way a shell
would, and parsed by the real command-line parsers: Ray's own ``ray`` CLI (click) and
``tune_selcopy.run.build_parser()``. Tests then check, and run, exactly these commands.
"""

from __future__ import annotations

import re
import shlex
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from tune_selcopy.run import build_parser

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
README = CLUSTER / "README.md"
RUN_MODULE = ["python", "-m", "tune_selcopy.run"]
_SEPARATORS = {"&&", "||", ";", "|"}
_REDIRECTS = {">", ">>", "<"}


def load(name: str) -> dict:
    """A YAML file of cluster/."""
    with open(CLUSTER / name) as f:
        return yaml.safe_load(f)


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def ray_pin() -> str:
    """X.Y.Z from the `ray[tune]==X.Y.Z` requirement in pyproject.toml."""
    deps = _pyproject()["dependencies"]
    pins = [
        m.group(1)
        for d in deps
        if (m := re.fullmatch(r"\s*ray\[[^\]]*\btune\b[^\]]*\]\s*==\s*([0-9][0-9.]*)\s*", d))
    ]
    assert len(pins) == 1, f"expected one ray[tune]==X pin in pyproject.toml, got {deps}"
    return pins[0]


def python_tag() -> str:
    """py311 from requires-python '>=3.11'."""
    m = re.search(r"(\d+)\.(\d+)", _pyproject()["requires-python"])
    assert m, _pyproject()["requires-python"]
    return f"py{m.group(1)}{m.group(2)}"


def project_version() -> str:
    return _pyproject()["version"]


@dataclass(frozen=True)
class Command:
    """One simple shell command: its environment, argv, output redirect and the line."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdout: str | None = None  # the target of `> FILE`
    line: str = ""
    source: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.line}"


def _split(line: str) -> list[list[str]]:
    """A shell line as simple commands (split at && || ; |), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def _commands(lines: list[str], source: str) -> list[Command]:
    """Shell lines (continuations joined) as commands; ``export X=Y`` carries on to the
    commands after it, as in a shell."""
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    exported: dict[str, str] = {}
    commands = []
    for line in text.splitlines():
        for words in _split(line):
            if words[0] == "export":
                exported.update(w.split("=", 1) for w in words[1:])
                continue
            env = dict(exported)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                key, value = words.pop(0).split("=", 1)
                env[key] = value
            stdout = None
            if ">" in words:
                i = words.index(">")
                stdout, words = words[i + 1], words[:i] + words[i + 2:]
            if words:
                commands.append(Command(words, env, stdout, line.strip(), source))
    return commands


def readme_commands() -> list[Command]:
    """Every command in the ```bash blocks of cluster/README.md."""
    blocks = re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", README.read_text(), flags=re.S | re.M)
    return [c for block in blocks for c in _commands(textwrap.dedent(block).splitlines(), "cluster/README.md")]


def header_commands(name: str) -> list[Command]:
    """The commands in the comment block at the top of a cluster/ config: its lines
    indented by three spaces or more after the ``#``."""
    header = []
    for line in (CLUSTER / name).read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:])
    return _commands([line for line in header if line.startswith("   ")], f"cluster/{name}")


def parse_ray(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``ray ...`` with Ray's own CLI; return the (sub)command name and its params.

    Raises click.UsageError on an unknown command or option, as the shell would.
    """
    from ray.scripts.scripts import cli

    assert argv[0] == "ray", argv
    ctx = cli.make_context("ray", argv[1:])
    command: click.Command = cli
    name = "ray"
    while isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return name, ctx.params


def parse_run(argv: list[str]):
    """Parse ``python -m tune_selcopy.run ...`` with the run command's own parser."""
    assert argv[: len(RUN_MODULE)] == RUN_MODULE, argv
    return build_parser().parse_args(argv[len(RUN_MODULE):])


def job_submissions(commands: list[Command]) -> list[Command]:
    """The ``ray job submit`` commands."""
    return [c for c in commands if c.argv[:3] == ["ray", "job", "submit"]]


def entrypoint(submit: Command) -> list[str]:
    """A job's entrypoint argv (everything after ``--``), as Ray's CLI reads it."""
    _, params = parse_ray(submit.argv)
    return list(params["entrypoint"])


def with_values(argv: list[str], values: dict[str, str]) -> list[str]:
    """``argv`` with the value of each named option replaced; every option must be there."""
    out = list(argv)
    for option, value in values.items():
        assert option in out, f"{option} missing from {shlex.join(argv)}"
        out[out.index(option) + 1] = value
    return out


def without(argv: list[str], option: str) -> list[str]:
    """``argv`` without one option and its value."""
    i = argv.index(option)
    return argv[:i] + argv[i + 2:]
