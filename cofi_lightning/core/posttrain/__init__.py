"""Post-training structured pruning without retraining (Kwon et al., NeurIPS 2022): Fisher
importance, structure search, rearrangement and least-squares rescaling of a fine-tuned model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cofi_lightning.core.masks import COFI_INIT_LOG_ALPHA, CoFiMasks, Masks
from cofi_lightning.core.posttrain.importance import mask_gradients
from cofi_lightning.core.posttrain.rearrange import rearrange
from cofi_lightning.core.posttrain.rescale import rescale
from cofi_lightning.core.posttrain.search import search

log = logging.getLogger(__name__)


@torch.no_grad()
def calibration_loss(model: nn.Module, masks: Masks, batches: Sequence[dict]) -> float:
    """The mean task loss of ``model`` under ``masks`` over the calibration examples."""
    total, count = 0.0, 0
    for batch in batches:
        n = len(batch["input_ids"])
        total += float(model(**batch, masks=masks).loss) * n
        count += n
    return total / count


def _tuned(model: nn.Module, masks: Masks, batches: Sequence[dict], mode: str) -> Masks:
    """``masks`` with the least-squares scales (``mode``: ``pruning.posttrain.rescale``)."""
    if mode == "never":
        return masks
    tuned = rescale(model, masks, batches)
    if mode == "always":
        return tuned
    before, after = (calibration_loss(model, m, batches) for m in (masks, tuned))
    kept = after < before
    log.info(
        "[prune] rescale: calibration loss %.4f untuned, %.4f tuned: %s",
        before,
        after,
        "tuned scales kept" if kept else "untuned masks kept",
    )
    return tuned if kept else masks


def posttrain_masks(
    model: nn.Module,
    batches: Sequence[dict],
    constraints: Sequence[Callable[[Masks], bool]],
    rearranged: bool = True,
    rescaled: str = "auto",
) -> list[Masks]:
    """Masks of the fine-tuned ``model`` for each constraint: searched by Fisher importance,
    rearranged within layers, their kept values tuned (soft; ``model.prune`` folds them).

    Args:
        model: The fine-tuned, unpruned CoFi model (left unchanged).
        batches: Calibration batches with labels (the importance and the tuning use the same).
        constraints: Per target, whether 0/1 masks meet it (monotone: see ``search.search``).
        rearranged: Run the rearrangement (``pruning.posttrain.rearrange``).
        rescaled: ``pruning.posttrain.rescale``: ``auto`` (the least-squares scales if they
            lower :func:`calibration_loss`), ``always`` or ``never``.

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
        out.append(_tuned(model, masks, batches, rescaled))
    return out


#: ``pruning.mask_init=posttrain``'s log-alphas, both CoFi's own initial values (see
#: :func:`warm_start_`): a unit the search keeps starts open, one it prunes where CoFi starts
#: every FFN dim (P(z ≠ 0) ≈ 0.83, soft score 0.5).
KEPT_LOG_ALPHA, PRUNED_LOG_ALPHA = COFI_INIT_LOG_ALPHA["head"], COFI_INIT_LOG_ALPHA["intermediate"]


@torch.no_grad()
def warm_start_(gates: CoFiMasks, kept: Masks) -> None:
    """Start CoFi's head and FFN-dim gates from the structure post-training pruning keeps
    (``pruning.mask_init=posttrain``): kept units at :data:`KEPT_LOG_ALPHA`, the others at
    :data:`PRUNED_LOG_ALPHA`.

    Why these values: both are CoFi's initial log-alphas, so the expected sparsity at step 0 is
    about 0.17 × the target (P(z ≠ 0) ≈ 0.83 at log-alpha 0): near the start of the Lagrangian's
    target ramp, and below CoFi's default init's (0.11 for BERT-shaped layers) up to targets of
    about 2/3. Gates started at the final structure, below P = 0.5, would start near the target
    and be pushed back open by the multipliers until the ramp caught up. The structure is a head
    start, not a verdict: the pruned units are sampled off more often and rank last in the
    deterministic masks, and the Lagrangian closes them first, but training can keep any of them.

    Args:
        gates: The gates of a model shaped as the searched one; a unit they do not mask is
            skipped.
        kept: 0/1 ``Masks(head=[L, N], intermediate=[L, I])`` of :func:`search.search`.
    """
    for unit, keep in kept.items():
        if unit in gates.gates:
            log_alpha = gates.gates[unit].log_alpha
            keep = keep.reshape(log_alpha.shape) != 0
            log_alpha.copy_(torch.where(keep, KEPT_LOG_ALPHA, PRUNED_LOG_ALPHA))
