"""``python -m tune_selcopy.analyze PATH``: what the seeds support, from the Parquet trial
logs alone.

For every (experiment, space) under PATH it prints the finding (one sentence: a difference,
none, or too few seeds to tell), then a compact table of the seeds' evidence with a
verdict per setting against the best, and the count of unfinished trials; with
``--reference FILE``, also a reproduction check against a reference table; with
``--detail``, the published table and every test behind the verdicts instead of the
compact table. The work itself is ``tune_selcopy.analysis``.

CLI: ``python -m tune_selcopy.analyze PATH [--space NAME] [--sort COLUMN] [--format
markdown|csv|json] [--detail] [--plot FILE.png] [--metric COLUMN] [--alpha A]
[--reference FILE]``. Bad input gives one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from tune_selcopy.analysis.evidence import ALPHA
from tune_selcopy.analysis.render import plots_line
from tune_selcopy.analysis.report import FORMATS, gather, notes, render
from tune_selcopy.analysis.results import DEFAULT_METRIC
from tune_selcopy.errors import UserError, help_parser, one_line

PROG = "python -m tune_selcopy.analyze"
DESCRIPTION = """\
Read a sweep's Parquet logs and say what its seeds support: per experiment one sentence
with the finding (a difference, none, or too few seeds to tell), then a compact table of
each setting's seeds (n, mean with its 95% interval, IQM, the seeds' values, verdict);
with --reference, a check against published results; with --detail, the published table
and every test behind the verdicts; with --plot, the learning curves and the intervals.
It needs only the logs: a sweep folder, a folder of several sweeps, or one gathered
Parquet file, local or at a URI. The statistics are explained in docs/analysis.md."""
EPILOG = """\
examples:
  {prog} examples/attn_act-5seeds.parquet --reference attn_act --plot curves.png
      the shipped real sweep, checked against the published runs, with its curves
  {prog} results/attn_act-20261201-120000 --metric validation_loss
      a sweep of yours, judged on the validation loss
  {prog} s3://BUCKET/results --space attn_invent --format csv > attn_invent.csv
      every attn_invent sweep in a bucket, as CSV (the sentences go to stderr)

exit codes:
  0    printed
  2    bad input: no logs there, foreign or broken logs, a bad reference file (one
       "error: ..." line on stderr)"""


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = help_parser(prog, DESCRIPTION, EPILOG.format(prog=prog))
    p.add_argument("path", metavar="PATH", help="a sweep's folder, a parent of several, or a Parquet file (local or URI)")
    p.add_argument("--space", metavar="SPACE",
                   help="only trials of this search space, a name or its .yaml file (default: every space)")
    p.add_argument("--sort", metavar="COLUMN", help="sort column (default: validation_sample_error%%, worst first); "
                   "append :asc or :desc")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="markdown", help="output format")
    p.add_argument("--plot", metavar="FILE.png", help="also write the learning curves to this PNG (default: no plot), and the "
                   "intervals of each setting next to it (x.png -> x-intervals.png, x-curves.png -> x-intervals.png)")
    p.add_argument("--detail", action="store_true", help="print the published table and every test behind the "
                   "verdicts, not the compact table")
    p.add_argument("--metric", default=DEFAULT_METRIC, metavar="COLUMN",
                   help="the metric of the evidence, the verdicts and the plot")
    p.add_argument("--alpha", type=float, default=ALPHA, metavar="A",
                   help="family-wise error rate of the verdicts: the chance of any false 'different'")
    p.add_argument("--reference", metavar="FILE",
                   help="also check the results against this reference CSV, or a shipped one by name, e.g. attn_act "
                   "(default: no check)")
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    try:
        args = _parser(prog).parse_args(argv)
        space = args.space
        if space is not None:  # imported here: spaces needs torch, reading logs does not
            from tune_selcopy.sweeps.space_sources import space_name_of

            space = space_name_of(space)
        results, checks, plots = gather(args.path, space=space, sort=args.sort, metric=args.metric, plot=args.plot,
                                        alpha=args.alpha, reference=args.reference)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    sys.stdout.write(render(results, checks, args.fmt, plots, args.detail))
    if args.fmt == "csv":
        for line in notes(results, checks) + ([plots_line(plots)] if plots else []):
            print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
