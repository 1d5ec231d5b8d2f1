"""Latency of pruned structures on one device: profiled tables and the gates' expected latency.

* ``table.py``: :class:`LatencyTable`, measured sublayer latencies on a grid and their
  (differentiable) interpolation;
* ``profile.py``: how the table is measured (the benchmark's timing protocol);
* ``expected.py``: the latency of a structure, the expected latency under the gates and the
  largest speedup a table allows.

CLI: ``python -m cofi_lightning.latency profile --help``.
"""

from cofi_lightning.latency.expected import (
    expected_latency,
    max_speedup,
    structure_latency,
)
from cofi_lightning.latency.table import LatencyTable, LatencyTableError

__all__ = [
    "LatencyTable",
    "LatencyTableError",
    "expected_latency",
    "max_speedup",
    "structure_latency",
]
