"""Optimizer and learning-rate schedule of the CoFi system: one AdamW over named parameter groups.

This file owns how trainable tensors are split into groups and which learning rate and schedule each
group gets:

* ``weights`` / ``weights_no_decay``: the student and the layer-distillation projection (model lr,
  linear decay with warm-up, or constant); biases and LayerNorm weights get no weight decay;
* ``log_alpha``: the mask log-alphas (``reg_lr``, constant, no decay);
* ``multipliers``: λ1, λ2 (``reg_lr``, constant, gradient *ascent* via ``maximize=True``).

One optimizer with per-group ``maximize`` replaces CoFi's three AdamWs and its negative learning
rate (see ``cofi_lightning/lagrangian.py``). It does not decide when pruning starts or clip
gradients (the system does, on the weight groups only).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from cofi_lightning.lagrangian import multiplier_param_group

#: Group names whose learning rate follows the weight schedule and whose gradients are clipped.
WEIGHT_GROUPS: tuple[str, ...] = ("weights", "weights_no_decay")

Schedule = Literal["linear", "constant"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings of one stage, validated on construction.

    Attributes:
        lr: Learning rate of the weight groups (paper: 2e-5 GLUE, 3e-5 SQuAD).
        reg_lr: Learning rate of the log-alphas and the multipliers (paper: 0.01).
        weight_decay: AdamW decay of the weight matrices (not biases / LayerNorm); CoFi used 0.
        schedule: ``linear`` (warm-up then linear decay to 0) or ``constant`` (after warm-up).
        warmup_ratio: Fraction of the stage's optimizer steps spent warming the weight lr up.
        max_grad_norm: Clip norm of the weight gradients (None or <= 0: no clipping); CoFi: 1.0.
        adam_eps: AdamW epsilon.
        freeze_embeddings: Keep the embedding tables and their LayerNorm out of the optimizer.
    """

    lr: float = 2e-5
    reg_lr: float = 0.01
    weight_decay: float = 0.0
    schedule: Schedule = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    adam_eps: float = 1e-8
    freeze_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.lr < 0 or self.reg_lr < 0:
            raise ValueError(f"learning rates must be >= 0, got lr={self.lr}, reg_lr={self.reg_lr}")
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"schedule must be 'linear' or 'constant', got {self.schedule!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def weight_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], cfg: OptimConfig
) -> list[dict[str, Any]]:
    """The two weight groups (decay / no decay) of the trainable weights.

    Args:
        named_parameters: ``(name, parameter)`` pairs of the student and the distillation
            projection; parameters with ``requires_grad=False`` (a frozen teacher) are skipped.
        cfg: Optimizer settings (lr, weight decay, embedding freeze).
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad or (cfg.freeze_embeddings and "embeddings." in name):
            continue
        (no_decay if _no_decay(name) else decay).append(p)
    return [
        {"name": "weights", "params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"name": "weights_no_decay", "params": no_decay, "lr": cfg.lr, "weight_decay": 0.0},
    ]


def build_optimizer(
    weights: Iterable[tuple[str, nn.Parameter]],
    cfg: OptimConfig,
    log_alphas: Iterable[nn.Parameter] = (),
    multipliers: nn.Module | None = None,
) -> torch.optim.AdamW:
    """One AdamW over the weight, log-alpha and multiplier groups (empty groups are dropped).

    Args:
        weights: Named weight parameters (see :func:`weight_groups`).
        cfg: Optimizer settings.
        log_alphas: The masks' log-alphas (``CoFiMasks.mask_parameters()``); none when not pruning.
        multipliers: The :class:`~cofi_lightning.lagrangian.LagrangeMultipliers`; None when not
            pruning.
    """
    groups = weight_groups(weights, cfg)
    groups.append(
        {"name": "log_alpha", "params": list(log_alphas), "lr": cfg.reg_lr, "weight_decay": 0.0}
    )
    if multipliers is not None:
        groups.append({"name": "multipliers", **multiplier_param_group(multipliers, cfg.reg_lr)})
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to optimize: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=cfg.lr, eps=cfg.adam_eps)


def weight_lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: Schedule) -> float:
    """Multiplier of the weight lr at ``step``: linear warm-up, then linear decay or constant.

    Args:
        step: Optimizer steps taken in this stage.
        total_steps: Optimizer steps of the whole stage (decay reaches 0 there).
        warmup_steps: Warm-up length in optimizer steps.
        schedule: ``linear`` or ``constant``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR: the weight schedule on the weight groups, constant 1 on the L0 groups."""
    warmup = int(cfg.warmup_ratio * total_steps)

    def weight_factor(step: int) -> float:
        return weight_lr_factor(step, total_steps, warmup, cfg.schedule)

    lambdas = [
        weight_factor if g.get("name") in WEIGHT_GROUPS else (lambda _: 1.0)
        for g in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def group_params(optimizer: torch.optim.Optimizer, names: Iterable[str]) -> list[torch.Tensor]:
    """The parameters of the optimizer groups called ``names`` (e.g. :data:`WEIGHT_GROUPS`)."""
    wanted = set(names)
    return [p for g in optimizer.param_groups if g.get("name") in wanted for p in g["params"]]
