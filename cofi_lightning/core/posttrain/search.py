"""The structure search under the run's constraint (Kwon et al. 2022, Sec. 3.2, Alg. 1).

Heads and FFN dims are ranked globally by Fisher importance. For every number ``k`` of kept heads
(the ``k`` most important), the most important FFN dims are added while the structure still
meets the constraint (a bisection: adding units never lowers the cost); the ``(k, n)`` with the
largest summed importance wins. The constraint is any monotone test of 0/1 masks: the run's
``constraint.real(gates, z) >= target`` (exact parameter sparsity, or the latency table's
reduction), the one rule CoFi's selection uses too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cofi_lightning.core.masks import Masks


def _top(scores: torch.Tensor, order: torch.Tensor, count: int) -> torch.Tensor:
    """0/1 mask of ``scores``' shape keeping the first ``count`` units of ``order`` (flat)."""
    mask = torch.zeros(scores.numel())
    mask[order[:count]] = 1.0
    return mask.view_as(scores)


def search(fisher: dict[str, torch.Tensor], fits: Callable[[Masks], bool]) -> Masks:
    """The 0/1 masks of largest summed importance that satisfy ``fits``.

    Args:
        fisher: ``{"head": [L, N], "intermediate": [L, I]}`` importance (diagonal Fisher).
        fits: Whether masks meet the constraint; must hold for fewer units whenever it holds
            for more. With the parameter constraint, a layer left without heads (FFN dims) loses
            its whole sublayer, output bias and LayerNorm included (``sublayer_alive``), and is
            counted so: the sparsity tested is exactly the export's.

    Returns:
        ``Masks(head=[L, N], intermediate=[L, I])`` of 0/1 values.

    Raises:
        ValueError: not even the structure without any head or FFN dim fits.
    """
    heads, ffn = fisher["head"], fisher["intermediate"]
    h_order = heads.flatten().argsort(descending=True, stable=True)
    f_order = ffn.flatten().argsort(descending=True, stable=True)
    h_gain = torch.cat([heads.new_zeros(1), heads.flatten()[h_order].cumsum(0)])
    f_gain = torch.cat([ffn.new_zeros(1), ffn.flatten()[f_order].cumsum(0)])

    def build(k: int, n: int) -> Masks:
        return Masks(head=_top(heads, h_order, k), intermediate=_top(ffn, f_order, n))

    best, best_gain = None, -1.0
    for k in range(heads.numel() + 1):
        if not fits(build(k, 0)):
            break  # more heads only cost more
        lo, hi = 0, ffn.numel()  # fits(k, lo) holds; find the largest such n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(build(k, mid)) else (lo, mid - 1)
        gain = float(h_gain[k] + f_gain[lo])
        if gain > best_gain:
            best, best_gain = build(k, lo), gain
    if best is None:
        raise ValueError("no structure meets the constraint, not even one without any unit")
    return best
