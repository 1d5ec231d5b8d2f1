"""Latency of pruned structures on one device: profiled tables (``python -m
cofi_lightning.latency profile --help``), timing, FLOPs and the gates' expected latency."""

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
