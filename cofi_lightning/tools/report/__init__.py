"""Reports over CoFi sweeps: collect every ``results.json``, aggregate over seeds, write Markdown.

``python -m cofi_lightning.tools.report <sweep dir> [<dir> ...] [out=<dir>]`` writes ``report.md``,
``results.csv`` and PNG plots (default ``<first dir>/report/``). The same from Python::

    runs, problems = collect_runs(["multirun/glue_small_s95"])
    path = write_report(runs, problems, "multirun/glue_small_s95/report")

``collect.py`` finds runs and failed jobs, ``tables.py`` aggregates and renders tables,
``plots.py`` draws, ``write.py`` lays out the report directory.
"""

from cofi_lightning.tools.report.collect import Problem, Run, collect_runs, parse_results
from cofi_lightning.tools.report.tables import Group, Stat, aggregate
from cofi_lightning.tools.report.write import render_markdown, write_report

__all__ = [
    "Group",
    "Problem",
    "Run",
    "Stat",
    "aggregate",
    "collect_runs",
    "parse_results",
    "render_markdown",
    "write_report",
]
