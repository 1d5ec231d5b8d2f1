"""Target-sparsity schedule and the Lagrangian sparsity penalty L_c of CoFi (Xia et al. 2022).

This file owns three small things:

* :class:`TargetPath`, the target sparsity t at each step: a linear ramp over the Lagrangian
  warm-up, or a sparsity path (ramp, dwell, ramp, ...);
* :class:`LagrangeMultipliers`, the two learned multipliers and the penalty
  ``L_c = λ1 (ŝ − t) + λ2 (ŝ − t)²`` (the paper's Lagrangian term, Sec. 3, after Wang et al.
  2020, "Structured Pruning of Large Language Models");
* :func:`multiplier_param_group`, the optimizer parameter group that trains the multipliers by
  gradient *ascent*.

It does not compute the expected sparsity ŝ (the mask module does, from the hard-concrete gates and
the parameter counts of ``modeling``), and it does not decide when pruning starts or how many steps
the warm-up has (the Lightning system resolves ``warmup_epochs`` into steps and passes them in).

Sign convention. The penalty is a min-max game: the masks minimise L_c while the multipliers
maximise it, so λ1 and λ2 keep growing in the direction that punishes the current violation until
ŝ reaches t. The original code got the ascent from a negative learning rate (an AdamW quirk: only
the default lr is validated). Here the ascent is explicit, ``maximize=True`` in the multipliers'
AdamW parameter group, with a non-negative lr. Per-group ``maximize`` is honoured by
``torch.optim.AdamW`` (checked on torch 2.13 and pinned by ``tests/test_lagrangian.py``), so one
optimizer can hold the model weights, the mask log-alphas and the multipliers as three groups.
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
    held to the end. One target is CoFi's schedule: ``t(step) = start + (target − start) ·
    min(1, step / warm-up)``. Ramping t instead of asking for the final sparsity at once lets the
    masks shrink gradually while distillation keeps up.

    Attributes:
        targets: Ascending targets in [0, 1).
        ramps: Steps (>= 0) of the ramp that reaches each target (same length as ``targets``);
            0 reaches it at once.
        dwells: Steps held at each target before the next ramp (one fewer than ``targets``).
        start: t at step 0, in [0, 1); CoFi uses 0.

    Raises:
        ValueError: a sparsity outside [0, 1), a negative length or mismatched lengths.
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
        """t at ``step`` optimizer steps after pruning started, i.e. *after* any
        distillation-only warm-up (negative: still in it, ``start``)."""
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
    """The multipliers λ1, λ2 of the sparsity constraint and the penalty L_c they define.

    Both start at 0, as in CoFi, so L_c is 0 at the first step and the masks feel no pressure until
    the multipliers have taken a first ascent step (their gradients ``ŝ − t`` and ``(ŝ − t)²`` are
    non-zero even at λ = 0).

    Attributes:
        lambda_1: Scalar parameter of the linear term. Under ascent it drifts negative while ŝ < t
            and positive while ŝ > t, so ``λ1 (ŝ − t)`` is positive in both cases.
        lambda_2: Scalar parameter of the quadratic term. Its gradient ``(ŝ − t)²`` is never
            negative, so under ascent it only grows: a quadratic penalty that stiffens over time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))

    def forward(self, expected_sparsity: Tensor, target: float | Tensor) -> Tensor:
        """The penalty ``L_c = λ1 (ŝ − t) + λ2 (ŝ − t)²`` (Xia et al. 2022, Sec. 3).

        Args:
            expected_sparsity: ŝ, scalar tensor, differentiable w.r.t. the mask log-alphas.
            target: t, the current target sparsity (float or scalar tensor).

        Returns:
            Scalar tensor; minimise it w.r.t. the log-alphas, maximise it w.r.t. the multipliers.
        """
        gap = expected_sparsity - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap

    @torch.no_grad()
    def reset_windup_(self, gap: float, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Anti-windup: zero λ1 (and its optimizer moments) when it pushes ŝ away from t.

        Under ascent λ1 integrates the gap, so after a long lag (ŝ < t while the target ramps up)
        it holds a large value that keeps pushing ŝ up after ŝ has passed t, and needs as many
        steps again to unwind: the overshoot of CoFiPruning #55 / LLM-Shearing #74. That wrong-way
        state is ``λ1 · (ŝ − t) < 0``; resetting there is the textbook integrator reset of a PI
        controller. The quadratic term is untouched (its gradient is proportional to the gap).
        In a simulation of the masks and multipliers alone (MiniLM-L6 shapes, a task pressure on
        every unit, ramps of 170 and 1,000 steps) it cut the overshoot from 0.16–0.35 to
        0.04–0.10 and the settling after the ramp from up to 782 steps to at most 52.

        Args:
            gap: ŝ − t of this step (a float: one host sync per step).
            optimizer: The optimizer holding λ1; its state for λ1 is dropped (a fresh start).

        Returns:
            Whether λ1 was reset.
        """
        if float(self.lambda_1) * gap >= 0:
            return False
        self.lambda_1.zero_()
        if optimizer is not None:
            optimizer.state.pop(self.lambda_1, None)
        return True


def multiplier_param_group(multipliers: LagrangeMultipliers, lr: float) -> dict[str, Any]:
    """An AdamW parameter group that trains the multipliers by gradient ascent.

    Use it beside the other groups, e.g.
    ``torch.optim.AdamW([weights_group, log_alpha_group, multiplier_param_group(m, 0.01)])``.
    Keep the multipliers out of gradient clipping (CoFi clips only the model weights).

    Args:
        multipliers: The module holding λ1 and λ2.
        lr: Non-negative learning rate (CoFi's ``reg_learning_rate``, 0.01 in its scripts); the
            ascent comes from ``maximize=True``, never from a negative lr.

    Returns:
        ``{"params": [λ1, λ2], "lr": lr, "weight_decay": 0.0, "maximize": True}``. Weight decay is 0
        because decaying λ towards 0 would quietly weaken the constraint.

    Raises:
        ValueError: if ``lr`` is negative.
    """
    if lr < 0:
        raise ValueError(f"`reg_lr` must be >= 0 (ascent is `maximize=True`), got {lr!r}")
    return {
        "params": list(multipliers.parameters()),
        "lr": lr,
        "weight_decay": 0.0,
        "maximize": True,
    }
