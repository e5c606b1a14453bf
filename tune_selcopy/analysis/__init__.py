"""The analysis: from the Parquet trial logs to tables, verdicts and plots. No torch, no Ray.

- ``stats``: the statistics, small pure functions over arrays;
- ``evidence``: the verdict procedure (family-wise error held at alpha);
- ``results``: grouping the logs into settings, the table's statistics;
- ``finding``: the one sentence that opens each experiment (what the seeds support);
- ``compact``: the default table (n, mean with its interval, IQM, the seeds, verdict);
- ``sentences``: the sentences of the detailed report;
- ``reproduction``: reading a reference table and checking a sweep against it;
- ``render``: Markdown, CSV and JSON; ``plots``: the curves and the intervals;
  ``formats``: how values print;
- ``report``: the results with their sentences, and the whole report in one format;
- ``simulate``: simulated sweeps that measure the verdicts' error rates (tests, bench/).
"""
