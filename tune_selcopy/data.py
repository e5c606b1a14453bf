"""``python -m tune_selcopy.data validation [--count N]``: print the reference validation
texts (``random.Random(23)``, docs/science.md, "The task"), one per line."""

from __future__ import annotations

import sys

from tune_selcopy.errors import ArgumentParser, UserError, help_parser, one_line
from tune_selcopy.science.task import VALIDATION_COUNT, validation_texts

PROG = "python -m tune_selcopy.data"
DESCRIPTION = """\
The task's data. `validation` prints the reference validation set, one line per sample:
input letters, the program of swaps, and the answer (XBFVU:3>4 1>4 1>2:BFVXU). It is the
same 10,000 lines every published run validated on, generated with Python's
random.Random(23); docs/science.md explains the format."""
EPILOG = """\
examples:
  {prog} validation --count 3
      the first three lines (XBFVU:3>4 1>4 1>2:BFVXU, ...)
  {prog} validation > validation.txt
      all 10,000

exit codes:
  0    printed
  2    bad input (one "error: ..." line on stderr)"""


def build_parser(prog: str = PROG) -> ArgumentParser:
    parser = help_parser(prog, DESCRIPTION, EPILOG.format(prog=prog))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    val = sub.add_parser("validation", help="print the reference validation texts, one per line",
                         description="Print the first --count texts of the reference validation set, one per line.",
                         epilog=EPILOG.format(prog=prog), formatter_class=parser.formatter_class)
    val.add_argument("--count", type=int, default=VALIDATION_COUNT, metavar="N",
                     help="how many, from the first (the set has 10,000; more continue the same generator)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    try:
        args = build_parser(prog).parse_args(argv)
        if args.count < 1:
            raise UserError(f"--count must be >= 1 (got {args.count})")
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print("\n".join(validation_texts(args.count)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
