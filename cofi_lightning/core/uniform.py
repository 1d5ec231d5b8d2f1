"""The simple baseline beside CoFi (``pruning.method=uniform``): every layer keeps the same number
of heads and FFN dimensions, as many as the target sparsity allows, chosen by weight magnitude
(each family's layer scores its units: ``unit_scores``). No masks are learned; the finetune stage
trains the structure as it does CoFi's.
"""

from __future__ import annotations

import torch
from torch import nn

from cofi_lightning.core.masks import CoFiMasks, Masks


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros_like(scores)
    mask[scores.topk(keep).indices] = 1.0
    return mask


@torch.no_grad()
def uniform_masks(model: nn.Module, masks: CoFiMasks, target: float) -> tuple[Masks, float]:
    """``(0/1 masks, their sparsity)``: the uniform structure of an unpruned ``model`` closest to
    ``target``, counted by its :class:`CoFiMasks`."""
    scores = [layer.unit_scores() for layer in model.base_model.encoder_layers()]
    head_scores = [h for h, _ in scores]
    ffn_scores = [f for _, f in scores]
    heads, ffn = len(head_scores[0]), len(ffn_scores[0])

    def build(k: int, f: int) -> Masks:
        values = {u: torch.ones_like(g.log_alpha) for u, g in masks.gates.items()}
        if "head" in values:
            values["head"] = torch.stack([_top(s, k) for s in head_scores])
        if "intermediate" in values:
            values["intermediate"] = torch.stack([_top(s, f) for s in ffn_scores])
        shaped = {u: v.reshape(masks.gates[u].log_alpha.shape) for u, v in values.items()}
        return masks._as_masks(shaped)

    def nearest(candidates) -> tuple[Masks, float]:
        best = min(candidates, key=lambda kf: abs(masks.sparsity(build(*kf)) - target))
        z = build(*best)
        return z, masks.sparsity(z)

    # A common keep fraction for heads and FFN dims, then the FFN width (fine-grained) adjusted
    # so the sparsity lands nearest the target with that head count.
    grid = [i / 200 for i in range(1, 201)]
    z, _ = nearest([(max(1, round(q * heads)), max(1, round(q * ffn))) for q in grid])
    k = int((z.head != 0).sum(dim=-1)[0]) if z.head is not None else heads
    return nearest([(k, f) for f in range(1, ffn + 1)])
