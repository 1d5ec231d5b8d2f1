"""Which parts of a masked encoder exist.

This file owns the one statement of the rule "a sublayer is alive": an attention (FFN) sublayer
exists while its layer gate ``z_MHA`` (``z_FFN``) is open and at least one of its heads (FFN
dimensions) is. The masked forward, the parameter count, the layer mapping of the distillation
and physical pruning all ask it here, so a masked model and its pruned copy agree on it.
"""

from __future__ import annotations

import torch


def sublayer_alive(layer: torch.Tensor | None, units: torch.Tensor | None) -> torch.Tensor | None:
    """Whether (or how probably) a sublayer exists.

    Args:
        layer: ``[...]`` the sublayer's gate: bool (open or not) or float (probability of being
            open). None: always open.
        units: ``[..., k]`` its heads / FFN dimensions, in the same convention. None: all open.

    Returns:
        ``[...]``: bool for bool inputs; for probabilities, the probability that the gate and at
        least one unit are open, ``P(layer) · (1 − Π_i (1 − P(unit_i)))`` (independent gates).
        None when both inputs are None.
    """
    if units is not None:
        units = units.any(-1) if units.dtype == torch.bool else 1 - (1 - units).prod(-1)
    if layer is None or units is None:
        return units if layer is None else layer
    return layer & units if layer.dtype == torch.bool else layer * units
