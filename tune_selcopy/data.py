"""``python -m tune_selcopy.data validation [--count N]``: print the reference validation
texts (``random.Random(23)``, docs/science.md, "The task"), one per line."""

from __future__ import annotations

import sys

from tune_selcopy.errors import ArgumentParser, UserError, one_line
from tune_selcopy.science.task import VALIDATION_COUNT, validation_texts


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tune_selcopy.data", description="Print the reference validation texts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    val = sub.add_parser("validation", help="print the reference validation texts, one per line")
    val.add_argument("--count", type=int, default=VALIDATION_COUNT)
    try:
        args = parser.parse_args(argv)
        if args.count < 1:
            raise UserError(f"--count must be >= 1 (got {args.count})")
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print("\n".join(validation_texts(args.count)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
