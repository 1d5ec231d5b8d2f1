"""Mask rearrangement inside each layer (Kwon et al. 2022, Sec. 3.3, Eq. 9).

The search ranks units by the Fisher's diagonal, as if they were independent. Within a layer they
are not: with the layer's block of the Fisher, ``F_l = Σ_b g_b g_bᵀ`` (``g_b [k]``: the batch's
mask gradients of the layer's heads or FFN dims), removing the set ``P`` costs
``Σ_b (Σ_{i∈P} g_{b,i})²``. Keeping each layer's count (so the structure and its cost are
unchanged), a greedy pass swaps units to lower that cost: starting from the ``|P|`` least
important units, each other unit in turn (least important first) joins ``P``, and the unit whose
removal from ``P`` leaves the lowest cost goes back.
"""

from __future__ import annotations

import torch


def pruned_cost(mask: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``[L]``: each layer's removal cost ``Σ_b (Σ_{i pruned} g_{b,i})²``.

    Args:
        mask: ``[L, k]`` 0/1 masks.
        grads: ``[B, L, k]`` per-batch mask gradients.
    """
    return (grads * (mask == 0)).sum(-1).pow(2).sum(0)


def _layer(mask: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``mask [k]`` rearranged with the layer's gradients ``grads [B, k]``."""
    dropped = int((mask == 0).sum())
    if dropped in (0, mask.numel()):
        return mask
    g = grads.T  # [k, B]
    order = g.pow(2).sum(1).argsort(stable=True).tolist()  # least important first
    pruned = order[:dropped]
    for unit in order[dropped:]:
        pruned.append(unit)
        vectors = g[pruned]  # [dropped + 1, B]
        without = vectors.sum(0) - vectors  # the pruned sum with each one left out
        del pruned[int(without.pow(2).sum(1).argmin())]
    out = torch.ones_like(mask)
    out[pruned] = 0.0
    return out


def rearrange(mask: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """0/1 ``mask [L, k]`` with each layer's kept units rearranged (the same count per layer).

    Args:
        mask: The searched masks of one unit type.
        grads: ``[B, L, k]`` per-batch mask gradients (``importance.mask_gradients``).
    """
    return torch.stack([_layer(mask[i], grads[:, i]) for i in range(mask.shape[0])])
