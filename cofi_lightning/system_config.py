"""Typed settings of the CoFi system's pruning schedule and distillation, validated on creation.

This file owns the two small dataclasses :class:`~cofi_lightning.lit_module.CoFiSystem` takes
besides :class:`~cofi_lightning.optim.OptimConfig`; the pipeline fills them from the Hydra config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PruningSchedule:
    """When pruning starts and how fast the target sparsity ramps up.

    Lengths in epochs are converted with the stage's optimizer steps per epoch; a length in steps,
    when given, wins.

    Attributes:
        target_sparsity: Final target t, in [0, 1).
        lagrangian_warmup_epochs / lagrangian_warmup_steps: Length of the linear ramp of t from
            ``start_sparsity`` to the target (paper: 2 epochs large GLUE, 20 small GLUE).
        pre_pruning_epochs / pre_pruning_steps: Distillation-only warm-up before masks and the
            Lagrangian switch on (README: 1 epoch large, 4 small; the original code ignored it).
        start_sparsity: t at the first pruning step (0 in CoFi).
    """

    target_sparsity: float
    lagrangian_warmup_epochs: float = 2.0
    lagrangian_warmup_steps: int | None = None
    pre_pruning_epochs: float = 0.0
    pre_pruning_steps: int | None = None
    start_sparsity: float = 0.0

    def __post_init__(self) -> None:
        for name in ("target_sparsity", "start_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"pruning.{name} must be in [0, 1), got {value}")

    def steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(pre_pruning_steps, lagrangian_warmup_steps)`` in optimizer steps."""

        def resolve(steps: int | None, epochs: float) -> int:
            return int(steps) if steps is not None else round(epochs * steps_per_epoch)

        return (
            resolve(self.pre_pruning_steps, self.pre_pruning_epochs),
            resolve(self.lagrangian_warmup_steps, self.lagrangian_warmup_epochs),
        )


@dataclass(frozen=True)
class DistillSettings:
    """Distillation weights (paper: α_layer/α_pred = 0.9/0.1 ... 0.5/0.5, T = 2)."""

    temperature: float = 2.0
    alpha_pred: float = 0.1
    alpha_layer: float = 0.9
    layer_mapping: str = "dynamic"

    def __post_init__(self) -> None:
        if self.layer_mapping not in ("dynamic", "fixed"):
            raise ValueError(
                f"distill.layer_mapping must be dynamic|fixed, got {self.layer_mapping}"
            )
