"""What differs between stages, handed to :class:`~cofi_lightning.training.lit_module.CoFiSystem`
as parts: the objective (:class:`TaskLoss` or :class:`Distillation`) and the pruning
(:class:`Pruning` or :class:`NoPruning`).

The teacher is deliberately not a module of the system: never in ``state_dict`` (the stage reloads
it on resume), never in an optimizer or DDP, never put in training mode by Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cofi_lightning.config import DistillConfig, PruningConfig
from cofi_lightning.core.constraint import LatencyConstraint, ParamsConstraint
from cofi_lightning.core.distillation import (
    LayerDistiller,
    distillation_loss,
    prediction_distill_loss,
    student_layer_alive,
)
from cofi_lightning.core.lagrangian import LagrangeMultipliers, TargetPath
from cofi_lightning.core.masks import CoFiMasks, Masks

#: ``log(key, value)`` of the LightningModule (extra keyword arguments as ``self.log``'s).
Log = Callable[..., None]

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_LABEL_KEYS = ("labels", "start_positions", "end_positions")


def run_model(model: nn.Module, batch: dict, masks: Masks | None, hidden: bool, labels: bool):
    """``model``'s forward on a batch (with the labels when it computes the task loss)."""
    inputs = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
    if labels:
        inputs.update({k: batch[k] for k in _LABEL_KEYS if k in batch})
    return model(**inputs, masks=masks, output_hidden_states=hidden)


def logits(out: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Classification ``[B, C]`` logits, or ``(start [B, S], end [B, S])`` for QA."""
    if getattr(out, "start_logits", None) is not None:
        return out.start_logits, out.end_logits
    return out.logits


# --- objectives -----------------------------------------------------------------------------------


class TaskLoss:
    """The task loss of the student (teacher fine-tuning; no teacher)."""

    layer_distiller = None
    hidden_states = False  # the student's forward need not return them
    labels = True

    def to(self, device: torch.device) -> None:
        """Nothing to move."""

    def loss(self, out: Any, batch: dict, masks: Masks | None, log: Log) -> torch.Tensor:
        log("train/task_loss", out.loss)
        return out.loss


class Distillation:
    """Distillation from a frozen teacher's outputs (Xia et al. 2022, Eq. 7-8), from its forward
    or, for batches carrying ``example_index``, from the on-disk cache the stage attaches as
    ``cache``; ``layer_distiller`` is None without layer distillation."""

    labels = False

    def __init__(
        self, teacher: nn.Module, config: DistillConfig, layer_distiller: LayerDistiller | None
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.config = config
        self.layer_distiller = layer_distiller
        self.hidden_states = layer_distiller is not None
        self.depth = teacher.config.num_hidden_layers
        self.layers = layer_distiller.distilled_layers(self.depth) if self.hidden_states else []
        self.cache = None

    def to(self, device: torch.device) -> None:
        self.teacher.to(device)

    def _teacher_outputs(self, batch: dict):
        """``(logits, distilled states [n_t, B, S, H] or None)`` of ``batch``."""
        hidden = self.hidden_states
        if self.cache is not None and "example_index" in batch:
            ids = batch["input_ids"]
            cached = self.cache.batch(batch["example_index"], ids.shape[1], ids.device)
            return cached.logits, cached.hidden if hidden else None
        with torch.no_grad():
            out = run_model(self.teacher, batch, None, hidden=hidden, labels=False)
        states = torch.stack([out.hidden_states[i + 1] for i in self.layers]) if hidden else None
        return logits(out), states

    def loss(self, out: Any, batch: dict, masks: Masks | None, log: Log) -> torch.Tensor:
        t_logits, t_hidden = self._teacher_outputs(batch)
        pred = prediction_distill_loss(logits(out), t_logits, self.config.temperature)
        layer = self._layer_loss(out, t_hidden, batch, masks, log) if self.hidden_states else None
        loss = distillation_loss(
            pred, layer, alpha_pred=self.config.alpha_pred, alpha_layer=self.config.alpha_layer
        )
        log("train/pred_loss", pred)
        log("train/distill_loss", loss)
        return loss

    def _layer_loss(self, out, t_hidden, batch, masks: Masks | None, log: Log) -> torch.Tensor:
        alive = None
        if masks is not None:  # the layers the masks remove are not matched
            alive = student_layer_alive(len(out.hidden_states) - 1, masks)
        layer, chosen = self.layer_distiller(
            out.hidden_states[1:],
            t_hidden,
            batch.get("attention_mask"),
            alive,
            mapping=self.config.layer_mapping,
            tokens=self.config.layer_loss_tokens,
            num_teacher_layers=self.depth,
        )
        log("train/layer_loss", layer)
        # How the dynamic mapping moves as layers are pruned (tensors: no host sync).
        for t_layer, s_layer in zip(self.layers, chosen, strict=True):
            log(f"distill/student_layer_for_teacher_{t_layer}", s_layer.float())
        return layer


# --- pruning --------------------------------------------------------------------------------------


class NoPruning:
    """An unmasked model: no gates, no Lagrangian, no mask metrics."""

    masks = multipliers = constraint = None

    def optimizer_parts(self) -> dict[str, Any]:
        return {}

    def schedule(self, per_epoch: int, total: int) -> None:
        pass

    def restart_step(self) -> int:
        return 0

    def active(self, step: int) -> bool:
        return False

    def train_masks(self, step: int) -> None:
        return None

    def penalty(self, loss: torch.Tensor, step: int, optimizer: Any, log: Log) -> torch.Tensor:
        return loss

    def clamp_(self) -> None:
        pass

    def eval_metrics(self, z: Masks | None) -> dict[str, float]:
        return {}


class Pruning:
    """The prune stage's part: gates sampled once per optimizer step, the Lagrangian after an
    optional distillation-only warm-up, and their logs.

    The mask noise is seeded by ``(seed, global_step)``: identical on every DDP rank without
    communication, and on resume. ``constraint`` None: the parameters, at ``config.target_list``.
    """

    def __init__(
        self,
        masks: CoFiMasks,
        config: PruningConfig,
        constraint: ParamsConstraint | LatencyConstraint | None = None,
        seed: int = 0,
    ) -> None:
        self.masks = masks
        self.multipliers = LagrangeMultipliers()
        self.config = config
        self.constraint = constraint or ParamsConstraint(config.target_list)
        self.seed = int(seed)
        # resolved in schedule(), once the trainer knows the epoch length
        self.pre_pruning_steps = 0
        self.lagrangian_warmup_steps = 0
        self.target_path: TargetPath | None = None
        self._noise: dict[str, torch.Tensor] | None = None
        self._noise_step = -1
        self.mask_draws = 0

    def optimizer_parts(self) -> dict[str, Any]:
        """The gates' log-alphas (descent) and the multipliers (ascent), at ``reg_lr``."""
        return {
            "reg_lr": self.config.reg_lr,
            "log_alphas": self.masks.mask_parameters(),
            "multipliers": self.multipliers,
        }

    def schedule(self, per_epoch: int, total: int) -> None:
        """Resolve the warm-ups and t(step) for a stage of ``total`` optimizer steps."""
        self.pre_pruning_steps, self.lagrangian_warmup_steps = self.config.steps(per_epoch)
        self.target_path = self._target_path(per_epoch, total)

    def _target_path(self, per_epoch: int, total: int | None) -> TargetPath:
        """t(step) of this stage; a ConfigError names the keys when it outlasts the stage."""
        self.config.check_fits(per_epoch, total)  # also checked at the door where it can be
        ramps, dwells = self.config.path_steps(per_epoch)  # one target: ([warm-up], [])
        targets = tuple(self.constraint.targets)
        return TargetPath(targets, tuple(ramps), tuple(dwells), self.config.start_sparsity)

    def restart_step(self) -> int:
        """The step at which the weights' optimizer restarts (0: never; ``restart_optimizer``)."""
        return self.pre_pruning_steps if self.config.restart_optimizer else 0

    def active(self, step: int) -> bool:
        """Masks and the Lagrangian are on (after the distillation-only warm-up)."""
        return step >= self.pre_pruning_steps

    def target(self, step: int) -> float:
        """The target t at ``step`` (0 / ``start_sparsity`` during the warm-up)."""
        path = self.target_path or self._target_path(1, None)  # stepped outside a Trainer
        return path(step - self.pre_pruning_steps)

    def train_masks(self, step: int) -> Masks | None:
        """Masks of this optimizer step (None before pruning starts): fresh noise once per step,
        re-sampled per micro-batch so each backward owns its autograd graph."""
        if not self.active(step):
            return None
        if self._noise_step != step:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            self._noise = self.masks.noise(generator)
            self._noise_step = step
            self.mask_draws += 1
        return self.masks.sample(self._noise)

    def penalty(self, loss: torch.Tensor, step: int, optimizer: Any, log: Log) -> torch.Tensor:
        """``loss`` + L_c (0 during the warm-up), logging the constraint's metrics; ``optimizer``
        (for the anti-windup) is None outside a trainer."""
        reset = None
        if self.active(step):
            s_hat = self.constraint.expected(self.masks)
            target = self.target(step)
            if self.config.multiplier_reset:
                reset = self.multipliers.reset_windup_(float(s_hat.detach()) - target, optimizer)
            lag = self.multipliers(s_hat, target)
        else:
            with torch.no_grad():
                s_hat = self.constraint.expected(self.masks)
            target, lag = 0.0, s_hat.new_zeros(())
        log("train/lagrangian_loss", lag.float())
        metrics = self.constraint.train_metrics(self.masks, s_hat, target, self.multipliers, reset)
        for key, value in metrics.items():
            log(key, value, prog_bar=key == self.constraint.progress_key)
        return loss + lag.to(torch.float32)

    def clamp_(self) -> None:
        self.masks.clamp_()

    def eval_metrics(self, z: Masks | None) -> dict[str, float]:
        """The constraint's validation metrics and each unit's kept fraction under ``z``."""
        metrics = self.constraint.eval_metrics(self.masks, z)
        if z is not None:
            for unit, gate in z.items():
                metrics[f"structure/{unit}_kept"] = float((gate != 0).float().mean())
        return metrics
