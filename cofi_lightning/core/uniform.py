"""The simple baseline beside CoFi: a uniform width reduction chosen by weight magnitude
(``pruning.method=uniform``).

Every layer keeps the same number of heads and the same number of FFN dimensions (hidden size and
layers untouched), as many as the target sparsity allows, counted with the same parameter formula
as CoFi's masks; within a layer the units with the largest weight norms are kept (the L2 norm of
each head's Q, K, V rows and output-projection columns; of each FFN dimension's input row and
output column). No masks are learned: the prune stage only writes this structure, and the
finetune stage trains it with the same distillation as CoFi's compact model. Give it CoFi's total
budget (prune + finetune steps) as finetune steps for a like-for-like comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from cofi_lightning.core.masks import CoFiMasks, Masks

# Each family's layer scores its own units (``unit_scores``): the L2 norm of each head's Q, K, V
# rows and output-projection columns, of each FFN dimension's input row(s) and output column.


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros_like(scores)
    mask[scores.topk(keep).indices] = 1.0
    return mask


@torch.no_grad()
def uniform_masks(model: nn.Module, masks: CoFiMasks, target: float) -> tuple[Masks, float]:
    """The uniform structure closest to ``target`` sparsity, and its sparsity.

    Args:
        model: An unpruned CoFi model (every layer has its attention and FFN).
        masks: The model's :class:`CoFiMasks` (shapes and the parameter formula).
        target: Target encoder sparsity in [0, 1).

    Returns:
        ``(masks, sparsity)``: 0/1 masks keeping k heads and f FFN dims in every layer: k from
        the common keep fraction of heads and FFN dims nearest the target, then f adjusted.
    """
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
    z, _ = nearest([(max(1, round(q * heads)), max(1, round(q * ffn))) for q in _grid(200)])
    k = int((z.head != 0).sum(dim=-1)[0]) if z.head is not None else heads
    return nearest([(k, f) for f in range(1, ffn + 1)])


def _grid(n: int) -> list[float]:
    return [i / n for i in range(1, n + 1)]
