"""The target schedule t(step) and the Lagrangian penalty ``L_c = λ1 (ŝ − t) + λ2 (ŝ − t)²`` of
CoFi (Xia et al. 2022, Sec. 3, after Wang et al. 2020).

L_c is a min-max game: the masks minimise it, the multipliers maximise it. The original got the
ascent from a negative learning rate; here it is ``maximize=True`` in the multipliers' AdamW
parameter group (per-group ``maximize`` is pinned by ``tests/test_lagrangian.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


def _check_sparsity(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")


@dataclass(frozen=True)
class TargetPath:
    """The target t(step) of a prune stage with one or several targets (a sparsity path).

    ``t`` ramps linearly from ``start`` to ``targets[0]`` over ``ramps[0]`` steps, holds it for
    ``dwells[0]`` steps, ramps to ``targets[1]`` over ``ramps[1]``, and so on; the last target is
    held to the end. One target is CoFi's schedule ``start + (target − start) · min(1, step /
    warm-up)``.
    """

    targets: tuple[float, ...]
    ramps: tuple[int, ...]
    dwells: tuple[int, ...] = ()
    start: float = 0.0

    def __post_init__(self) -> None:
        if not self.targets or len(self.ramps) != len(self.targets):
            raise ValueError(f"one ramp per target: {self.targets} / {self.ramps}")
        if len(self.dwells) != len(self.targets) - 1:
            raise ValueError(f"one dwell between targets: {self.targets} / {self.dwells}")
        for target in self.targets:
            _check_sparsity("target_sparsity", target)
        _check_sparsity("start_sparsity", self.start)
        if min(self.ramps + self.dwells) < 0:
            raise ValueError(
                f"ramps and dwells must be >= 0 steps, got {self.ramps} / {self.dwells}"
            )

    def __call__(self, step: int) -> float:
        """t at ``step`` optimizer steps after pruning started (negative: ``start``)."""
        begin, low = 0, self.start
        for k, target in enumerate(self.targets):
            if step < begin:
                return low
            if step < begin + self.ramps[k]:
                return low + (target - low) * ((step - begin) / self.ramps[k])
            if k == len(self.targets) - 1 or step < begin + self.ramps[k] + self.dwells[k]:
                return target
            begin, low = begin + self.ramps[k] + self.dwells[k], target
        raise AssertionError("unreachable")

    def reached_at(self, k: int) -> int:
        """The step at which t first equals ``targets[k]`` (end of its ramp)."""
        return sum(self.ramps[: k + 1]) + sum(self.dwells[:k])

    @property
    def length(self) -> int:
        """Steps until the last target is reached (the stage must be at least this long)."""
        return self.reached_at(len(self.targets) - 1)


class LagrangeMultipliers(nn.Module):
    """The multipliers λ1, λ2 (both start at 0, as in CoFi) and the penalty L_c they define.

    Under ascent λ1 takes the sign of ŝ − t, and λ2 (gradient ``(ŝ − t)² >= 0``) only grows.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))

    def forward(self, expected_sparsity: Tensor, target: float | Tensor) -> Tensor:
        """``L_c = λ1 (ŝ − t) + λ2 (ŝ − t)²`` of the expected sparsity ŝ and the target t."""
        gap = expected_sparsity - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap

    @torch.no_grad()
    def reset_windup_(self, gap: float, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Anti-windup: zero λ1 (and its optimizer state) when it pushes ŝ away from t; returns
        whether it did.

        Under ascent λ1 integrates the gap, so after a long lag it keeps pushing ŝ past t (the
        overshoot of CoFiPruning #55 / LLM-Shearing #74). That wrong-way state is
        ``λ1 · (ŝ − t) < 0``; resetting there is a PI controller's integrator reset.

        Args:
            gap: ŝ − t of this step (a float: one host sync per step).
        """
        if float(self.lambda_1) * gap >= 0:
            return False
        self.lambda_1.zero_()
        if optimizer is not None:
            optimizer.state.pop(self.lambda_1, None)
        return True


def multiplier_param_group(multipliers: LagrangeMultipliers, lr: float) -> dict[str, Any]:
    """The AdamW parameter group that trains the multipliers by ascent at ``lr >= 0`` (no weight
    decay: decaying λ towards 0 would quietly weaken the constraint)."""
    return {
        "params": list(multipliers.parameters()),
        "lr": lr,
        "weight_decay": 0.0,
        "maximize": True,
    }
