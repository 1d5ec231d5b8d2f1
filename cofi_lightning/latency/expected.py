"""Latency of a structure, and the expected latency under the gates (differentiable).

For a structure with ``n_l`` heads and ``m_l`` FFN dimensions in layer l and hidden size h, the
latency is read from the device's table::

    latency = c · ( fixed(h) + Σ_l [ attention(n_l, h) + ffn(m_l, h) ] )

(c: the table's calibration). The expected latency ℓ̂ plugs in the expected counts
(``structure.unit_counts``), so it is differentiable in the log-alphas. It is the latency at the
expected structure, not the expected latency (Jensen's gap; the tests bound it).
"""

from __future__ import annotations

import torch

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.latency.table import LatencyTable
from cofi_lightning.modeling.structure import Structure, unit_counts


def _structure_ms(
    table: LatencyTable, heads: torch.Tensor, widths: torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    """The module docstring's formula of ``[L]`` float64 (possibly fractional) heads and widths
    and a float64 scalar hidden size."""
    layers = table.attention_ms(heads, hidden) + table.ffn_ms(widths, hidden)
    return table.calibration * (table.fixed_ms(hidden) + layers.sum())


def expected_latency(masks: CoFiMasks, table: LatencyTable) -> torch.Tensor:
    """ℓ̂ in ms (float64 scalar), differentiable in the masks' log-alphas."""
    kept = unit_counts(masks.keep_probabilities().map(torch.Tensor.double), masks.full)
    return _structure_ms(table, kept.heads, kept.widths, kept.hidden)


def structure_latency(table: LatencyTable, structure: Structure) -> float:
    """The table's latency (ms) of a structure (of deterministic masks, or of a pruned config)."""
    heads = torch.tensor(structure.num_heads, dtype=torch.float64)
    widths = torch.tensor(structure.intermediate_sizes, dtype=torch.float64)
    hidden = torch.tensor(float(structure.hidden_size), dtype=torch.float64)
    return float(_structure_ms(table, heads, widths, hidden))


def max_speedup(table: LatencyTable, prune_hidden: bool = True) -> float:
    """The largest speedup any structure reaches on this table: every layer removed, at the
    smallest profiled hidden size (the full one unless ``prune_hidden``), leaves the fixed cost."""
    removed = torch.zeros(table.meta["num_layers"], dtype=torch.float64)  # 0 heads, width 0
    sizes = table.hidden_sizes if prune_hidden else table.hidden_sizes[-1:]
    least = min(
        float(_structure_ms(table, removed, removed, torch.tensor(float(h), dtype=torch.float64)))
        for h in sizes
    )
    return table.full_ms() / least
