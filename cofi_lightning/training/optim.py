"""Optimizer and learning-rate schedule of the CoFi system: one AdamW over named parameter groups.

This file owns how trainable tensors are split into groups and which learning rate and schedule each
group gets:

* ``weights`` / ``weights_no_decay``: the student and the layer-distillation projection (model lr,
  linear decay with warm-up, or constant); biases and LayerNorm weights get no weight decay;
* ``log_alpha``: the mask log-alphas (``reg_lr``, constant, no decay);
* ``multipliers``: λ1, λ2 (``reg_lr``, constant, gradient *ascent* via ``maximize=True``).

One optimizer with per-group ``maximize`` replaces CoFi's three AdamWs and its negative learning
rate (see ``cofi_lightning/core/lagrangian.py``). It does not decide when pruning starts or clip
gradients (the system does, on the weight groups only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from cofi_lightning.config import OptimConfig
from cofi_lightning.core.lagrangian import multiplier_param_group

#: Group names whose learning rate follows the weight schedule and whose gradients are clipped.
WEIGHT_GROUPS: tuple[str, ...] = ("weights", "weights_no_decay")

Schedule = Literal["linear", "constant"]


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def weight_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    cfg: OptimConfig,
    lr: float,
    freeze_embeddings: bool = False,
) -> list[dict[str, Any]]:
    """The two weight groups (decay / no decay) of the trainable weights.

    Args:
        named_parameters: ``(name, parameter)`` pairs of the student and the distillation
            projection; parameters with ``requires_grad=False`` (a frozen teacher) are skipped.
        cfg: Shared optimizer settings (weight decay).
        lr: The stage's weight learning rate.
        freeze_embeddings: Leave the embedding tables and their LayerNorm out.
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad or (freeze_embeddings and "embeddings." in name):
            continue
        (no_decay if _no_decay(name) else decay).append(p)
    return [
        {"name": "weights", "params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
        {"name": "weights_no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]


def build_optimizer(
    weights: Iterable[tuple[str, nn.Parameter]],
    cfg: OptimConfig,
    *,
    lr: float,
    reg_lr: float = 0.0,
    freeze_embeddings: bool = False,
    log_alphas: Iterable[nn.Parameter] = (),
    multipliers: nn.Module | None = None,
) -> torch.optim.AdamW:
    """One AdamW over the weight, log-alpha and multiplier groups (empty groups are dropped).

    Args:
        weights: Named weight parameters (see :func:`weight_groups`).
        cfg: Shared optimizer settings (``optim``: weight decay, epsilon).
        lr: The stage's weight learning rate (paper: 2e-5 GLUE, 3e-5 SQuAD).
        reg_lr: Learning rate of the log-alphas and the multipliers (``pruning.reg_lr``).
        freeze_embeddings: Leave the embedding tables and their LayerNorm out.
        log_alphas: The masks' log-alphas (``CoFiMasks.mask_parameters()``); none when not pruning.
        multipliers: The :class:`~cofi_lightning.core.lagrangian.LagrangeMultipliers`; None when not
            pruning.
    """
    groups = weight_groups(weights, cfg, lr, freeze_embeddings)
    groups.append(
        {"name": "log_alpha", "params": list(log_alphas), "lr": reg_lr, "weight_decay": 0.0}
    )
    if multipliers is not None:
        groups.append({"name": "multipliers", **multiplier_param_group(multipliers, reg_lr)})
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to optimize: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=lr, eps=cfg.adam_eps)


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
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig,
    schedule: Schedule,
    total_steps: int,
    restart_at: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR: the weight schedule on the weight groups, constant 1 on the L0 groups.

    Args:
        optimizer: From :func:`build_optimizer`.
        cfg: Shared optimizer settings (``warmup_ratio``).
        schedule: The stage's weight schedule, ``linear`` or ``constant``.
        total_steps: Optimizer steps of the whole stage.
        restart_at: > 0 starts the weight schedule afresh at that step, over the remaining
            ``total_steps - restart_at`` steps (with its own warm-up), as the original does when
            pruning starts. A pure function of the step, so a resumed run needs no extra state.
    """

    def weight_factor(step: int) -> float:
        length = total_steps
        if 0 < restart_at <= step:
            step, length = step - restart_at, total_steps - restart_at
        return weight_lr_factor(step, length, int(cfg.warmup_ratio * length), schedule)

    lambdas = [
        weight_factor if g.get("name") in WEIGHT_GROUPS else (lambda _: 1.0)
        for g in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def group_params(optimizer: torch.optim.Optimizer, names: Iterable[str]) -> list[torch.Tensor]:
    """The parameters of the optimizer groups called ``names`` (e.g. :data:`WEIGHT_GROUPS`)."""
    wanted = set(names)
    return [p for g in optimizer.param_groups if g.get("name") in wanted for p in g["params"]]
