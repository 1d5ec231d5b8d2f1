"""What the Lagrangian constrains: the encoder's parameters (CoFi) or its latency on a device.

Both are expressed as a *reduction* in [0, 1) so the target ramp, the multipliers, the anti-windup
and the best-structure window work unchanged on either:

* :class:`ParamsConstraint`: the sparsity ``1 − params / params(unpruned)``
  (``pruning.target_sparsity``);
* :class:`LatencyConstraint`: ``1 − latency / latency(unpruned)`` read from a device's latency
  table (``cofi_lightning.latency``); a target speedup x is the reduction ``1 − 1/x``.

Each gives the expected value under the gates (differentiable in the log-alphas) and the real value
of the structure deterministic masks keep (what is exported).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.latency import LatencyTable, expected_latency, structure_latency


class ParamsConstraint:
    """CoFi's constraint on the expected number of encoder parameters.

    Args:
        target_sparsity: The target, or the ascending targets of a sparsity path
            (``pruning.targets``); ``target`` is then the last one.
    """

    name = "params"
    prefix = "sparsity"  # metric keys: sparsity/expected, sparsity/deterministic, ...

    def __init__(self, target_sparsity: float | Sequence[float]) -> None:
        targets = [target_sparsity] if isinstance(target_sparsity, int | float) else target_sparsity
        self.targets = tuple(float(t) for t in targets)
        self.target = self.targets[-1]

    def expected(self, masks: CoFiMasks) -> torch.Tensor:
        return masks.expected_sparsity()

    def real(self, masks: CoFiMasks, z: Masks) -> float:
        return masks.sparsity(z)

    def describe(self, masks: CoFiMasks, z: Masks) -> dict[str, float]:
        return {}


class LatencyConstraint:
    """A constraint on the latency of the encoder on the table's device.

    Args:
        table: The device's latency table of this model shape.
        target_speedup: x > 1: the target latency is the unpruned latency / x.
    """

    name = "latency"
    prefix = "latency_reduction"  # latency_reduction/expected, .../deterministic, ...

    def __init__(self, table: LatencyTable, target_speedup: float) -> None:
        if target_speedup <= 1:
            raise ValueError(f"target_speedup must be > 1, got {target_speedup}")
        self.table = table
        self.target_speedup = float(target_speedup)
        self.target = 1.0 - 1.0 / self.target_speedup
        self.targets = (self.target,)
        self.full_ms = table.full_ms()

    def expected(self, masks: CoFiMasks) -> torch.Tensor:
        return 1.0 - expected_latency(masks, self.table) / self.full_ms

    def real(self, masks: CoFiMasks, z: Masks) -> float:
        return 1.0 - structure_latency(masks, self.table, z) / self.full_ms

    def describe(self, masks: CoFiMasks, z: Masks) -> dict[str, float]:
        """``latency/*`` numbers of a structure: table ms, unpruned ms, table speedup."""
        ms = structure_latency(masks, self.table, z)
        return {
            "latency/table_ms": ms,
            "latency/unpruned_ms": self.full_ms,
            "latency/table_speedup": self.full_ms / ms,
        }
