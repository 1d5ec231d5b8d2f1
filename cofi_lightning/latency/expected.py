"""Latency of a structure, and the expected latency under the gates (differentiable).

For a structure with ``n_l`` heads and ``m_l`` FFN dimensions in layer l and hidden size h, the
latency is read from the device's table::

    latency = c · ( fixed(h) + Σ_l [ attention(n_l, h) + ffn(m_l, h) ] )

(a removed sublayer is the table's count 0, whose cost is ≈ 0; c is the table's calibration of
parts to the whole model). The expected latency ℓ̂ under the
hard-concrete gates plugs in the expected counts: ``n̂_l = Σ_i P(z_head_i ≠ 0) · P(z_layer ≠ 0)``,
likewise ``m̂_l`` and ``ĥ = Σ_d P(z_hidden_d ≠ 0)``; the table is interpolated linearly between its
grid points, so ℓ̂ is differentiable in the log-alphas. This is the latency at the expected
structure, not the expectation of the latency (Jensen's gap); the tests state its error against a
Monte-Carlo mean over sampled structures.
"""

from __future__ import annotations

import torch

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.latency.table import LatencyTable
from cofi_lightning.modeling.structure import Structure, unit_counts


def _structure_ms(
    table: LatencyTable, heads: torch.Tensor, widths: torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    """The module docstring's formula: ``c · (fixed(h) + Σ_l [attention(n_l, h) + ffn(m_l, h)])``.

    Args:
        heads, widths: ``[L]`` float64 kept heads and FFN dimensions per layer (fractional for
            expected counts).
        hidden: The kept hidden size (float64 scalar).
    """
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
    """The largest speedup over the unpruned model that any structure reaches on this table.

    The least latency is that of every layer removed (0 heads, FFN width 0) at the smallest
    profiled hidden size (at the full one when hidden dims are not pruned): what remains is the
    fixed cost (embeddings, pooler, classifier), so a target speedup at or beyond this bound can
    never be met however long the prune stage runs.

    Args:
        table: The device's latency table.
        prune_hidden: Whether the hidden dimension is pruned (``hidden`` in ``pruning.units``).
    """
    removed = torch.zeros(table.meta["num_layers"], dtype=torch.float64)  # 0 heads, width 0
    sizes = table.hidden_sizes if prune_hidden else table.hidden_sizes[-1:]
    least = min(
        float(_structure_ms(table, removed, removed, torch.tensor(float(h), dtype=torch.float64)))
        for h in sizes
    )
    return table.full_ms() / least
