"""One AdamW over named parameter groups, and their learning-rate schedule:

* ``weights`` / ``weights_no_decay``: the student and the distillation projection (the stage's lr,
  its schedule); biases and LayerNorm weights get no weight decay;
* ``log_alpha``: the mask log-alphas (``reg_lr``, constant, no decay);
* ``multipliers``: λ1, λ2 (``reg_lr``, constant, ascent via ``maximize=True``).

It replaces CoFi's three AdamWs and its negative learning rate.
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
    """The two weight groups (decay / no decay) of the trainable ``named_parameters``
    (``freeze_embeddings``: the embedding tables and their LayerNorm left out)."""
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
    """One AdamW over the weight, log-alpha and multiplier groups (empty groups are dropped);
    ``reg_lr`` is ``pruning.reg_lr``."""
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
    """Multiplier of the weight lr at ``step``: linear warm-up, then linear decay (to 0 at
    ``total_steps``) or constant."""
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

    ``restart_at > 0`` starts the weight schedule afresh at that step (with its own warm-up), as
    the original does when pruning starts; a pure function of the step, so resuming needs no state.
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
