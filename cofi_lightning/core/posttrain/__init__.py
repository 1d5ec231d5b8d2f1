"""Post-training structured pruning without retraining (Kwon et al., NeurIPS 2022): Fisher
importance, structure search, rearrangement and least-squares rescaling of a fine-tuned model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from cofi_lightning.core.masks import Masks
from cofi_lightning.core.posttrain.importance import mask_gradients
from cofi_lightning.core.posttrain.rearrange import rearrange
from cofi_lightning.core.posttrain.rescale import rescale
from cofi_lightning.core.posttrain.search import search


def posttrain_masks(
    model: nn.Module,
    batches: Sequence[dict],
    constraints: Sequence[Callable[[Masks], bool]],
    rearranged: bool = True,
    rescaled: bool = True,
) -> list[Masks]:
    """Masks of the fine-tuned ``model`` for each constraint: searched by Fisher importance,
    rearranged within layers, their kept values tuned (soft; ``model.prune`` folds them).

    Args:
        model: The fine-tuned, unpruned CoFi model (left unchanged).
        batches: Calibration batches with labels (the importance and the tuning use the same).
        constraints: Per target, whether 0/1 masks meet it (monotone: see ``search.search``).
        rearranged: Run the rearrangement (``pruning.posttrain.rearrange``).
        rescaled: Run the least-squares tuning (``pruning.posttrain.rescale``).

    Returns:
        One ``Masks(head=[L, N], intermediate=[L, I])`` per constraint.
    """
    grads = mask_gradients(model, batches)  # once for every target
    fisher = {unit: g.pow(2).sum(0) for unit, g in grads.items()}
    out = []
    for fits in constraints:
        masks = search(fisher, fits)
        if rearranged:
            masks = Masks(**{unit: rearrange(t, grads[unit]) for unit, t in masks.items()})
        out.append(rescale(model, masks, batches) if rescaled else masks)
    return out
