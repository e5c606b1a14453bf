"""The analysis: from the Parquet trial logs to tables, verdicts and plots. No torch, no Ray.

- ``stats``: the statistics, small pure functions over arrays;
- ``evidence``: the verdict procedure (family-wise error held at alpha);
- ``results``: grouping the logs into settings, the table's statistics;
- ``sentences``: the sentences under the tables;
- ``reproduction``: reading a reference table and checking a sweep against it;
- ``render``: Markdown, CSV, JSON and the plot; ``formats``: how values print;
- ``report``: the results with their sentences, and the whole report in one format;
- ``simulate``: simulated sweeps that measure the verdicts' error rates (tests, bench/).
"""
