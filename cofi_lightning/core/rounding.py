"""Round a pruned structure to hardware-friendly widths (``export.round_to=<k>``): GEMMs whose
widths are multiples of 8, 16 or 64 run faster than odd ones of almost the same size.

Before the finetune stage each layer's kept FFN width (optionally the hidden size) moves to the
nearest multiple of k, at least k, adding or dropping units by their gates' soft scores; a
removed FFN sublayer stays removed.
"""

from __future__ import annotations

import torch

from cofi_lightning.core.masks import Masks


def _round_row(z: torch.Tensor, score: torch.Tensor, multiple: int) -> torch.Tensor:
    """One group ``[n]``: keep the nearest multiple of ``multiple`` units, by score."""
    kept = int((z != 0).sum())
    if kept == 0 or multiple <= 1:
        return z
    width = min(z.numel(), max(multiple, round(kept / multiple) * multiple))
    # kept units first (by score), then the dropped ones by score
    order = sorted(range(z.numel()), key=lambda i: (z[i] == 0, -float(score[i])))
    keep = torch.zeros_like(z, dtype=torch.bool)
    keep[order[:width]] = True
    return torch.where(keep, torch.where(z != 0, z, score.to(z.dtype)), torch.zeros_like(z))


def round_widths(masks: Masks, scores: Masks, multiple: int, hidden: bool = False) -> Masks:
    """Deterministic ``masks`` with every layer's FFN width (and the hidden size if ``hidden``)
    rounded to ``multiple`` by the gates' soft ``scores`` (``prune/best/scores.pt``)."""
    values = dict(masks.items())
    if masks.intermediate is not None:
        values["intermediate"] = torch.stack(
            [
                _round_row(z, s, multiple)
                for z, s in zip(masks.intermediate, scores.intermediate, strict=True)
            ]
        )
    if hidden and masks.hidden is not None:
        values["hidden"] = _round_row(masks.hidden, scores.hidden, multiple)
    return Masks(**values)
