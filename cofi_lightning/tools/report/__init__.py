"""Reports over CoFi sweeps (``python -m cofi_lightning.tools.report``, docs/sweeps.md):
``collect.py`` finds runs and failed jobs, ``tables.py`` aggregates over seeds and renders tables,
``plots.py`` and ``curves.py`` draw, ``write.py`` lays out the report directory."""

from cofi_lightning.tools.report.collect import collect_runs

__all__ = ["collect_runs"]
