"""Fisher importance of heads and FFN dims (Kwon et al. 2022, Sec. 3.1 / Eq. 4).

With a mask variable ``m_i`` on every head and FFN dim (all ones: the fine-tuned model), the
loss increase of pruning a set ``P`` is, to second order around ``m = 1``,
``ΔL ≈ ½ (1 − m)ᵀ F (1 − m)`` with the empirical Fisher ``F = Σ_b g_b g_bᵀ`` of the mask gradients
``g_b = ∂L_b/∂m`` of each calibration batch ``b``. The diagonal ``Σ_b g_{b,i}²`` is a unit's
importance (the search keeps the most important); the per-layer blocks are what the
rearrangement improves. This file owns the gradient pass only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from cofi_lightning.core.masks import Masks
from cofi_lightning.modeling.structure import Structure

#: The units post-training pruning removes (hidden dims and whole sublayers are CoFi's).
UNITS: tuple[str, ...] = ("head", "intermediate")


def mask_gradients(model: nn.Module, batches: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Per-batch gradients of the task loss w.r.t. all-ones head and FFN-dim masks.

    Args:
        model: An unpruned CoFi model (eval mode is set: no dropout).
        batches: Calibration batches with their labels (the model returns ``loss``).

    Returns:
        ``{"head": [batches, L, N], "intermediate": [batches, L, I]}`` float64 on the CPU.
    """
    shapes = Structure.from_config(model.config).mask_shapes()
    device = next(model.parameters()).device
    z = {u: torch.ones(shapes[u], device=device, requires_grad=True) for u in UNITS}
    model.eval()
    grads: dict[str, list[torch.Tensor]] = {u: [] for u in UNITS}
    for batch in tqdm(batches, desc="[prune] Fisher importance", leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch, masks=Masks(**z)).loss
        for unit, g in zip(UNITS, torch.autograd.grad(loss, [z[u] for u in UNITS]), strict=True):
            grads[unit].append(g.detach().double().cpu())
    return {u: torch.stack(g) for u, g in grads.items()}
