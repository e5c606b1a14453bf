"""The one exception type that command-line entry points turn into a one-line error, and
the pieces every CLI shares to do so."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its tracebacks


class UserError(Exception):
    """Bad input or an unusable environment (config, space, resources, storage, logs):
    printed as one ``error: ...`` line, exit code 2."""


def one_line(text: object, limit: int = 1000) -> str:
    """``text`` with all whitespace runs collapsed to one space, cut to ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def last_line(text: object, limit: int = 300) -> str:
    """The last non-empty line of ``text`` (a traceback ends with its exception line),
    colour codes stripped, cut to ``limit`` characters."""
    lines = [line.strip() for line in ANSI_CODES.sub("", str(text)).splitlines() if line.strip()]
    return one_line(lines[-1] if lines else "unknown error", limit)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ``UserError`` instead of printing the usage block
    and exiting, so that every CLI reports bad arguments as the same one line."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` as the commands write it: the description's and epilog's line breaks kept
    (examples, exit codes), and each option's default appended unless its help already
    says it or there is none to show (``None``: the help says what happens; a flag: off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        none = action.default is None or action.default is False or action.default == []
        if "default" in text or none or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def help_parser(prog: str, description: str, epilog: str) -> ArgumentParser:
    """The parser of a command: one-line usage errors, the shared help layout."""
    return ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
