"""The CoFi training system: a LightningModule holding student, masks, multipliers and teacher.

This file owns one training / validation step of every stage (Xia et al. 2022, Sec. 3):

* teacher fine-tuning and plain fine-tuning: the task loss of an unmasked model (no teacher);
* pruning: masks sampled once per optimizer step, identical on every DDP rank (the noise comes from
  a generator seeded by ``(seed, global_step)``, so no communication is needed), distillation
  ``α_layer·L_layer + α_pred·L_pred`` from a frozen teacher, and the Lagrangian
  ``λ1(ŝ−t) + λ2(ŝ−t)²`` after an optional distillation-only warm-up;
* finetune of the compact model: distillation without masks.

It does not build models or data, choose stages, or write files (``cofi_lightning.run.pipeline``),
and its optimizer groups live in ``cofi_lightning.training.optim``. The teacher is deliberately
*not* a registered submodule: it is never in ``state_dict`` (checkpoints stay small; the pipeline
reloads it from its HF directory on resume), never in ``parameters()`` (so never in an optimizer or
in DDP), and Lightning's ``.train()`` calls never take it out of eval mode.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from cofi_lightning.config import (
    DistillConfig,
    OptimConfig,
    PruningConfig,
    StageConfig,
)
from cofi_lightning.config.stage_configs import stage_total, steps_per_epoch
from cofi_lightning.core.constraint import LatencyConstraint, ParamsConstraint
from cofi_lightning.core.distillation import (
    LayerDistiller,
    distillation_loss,
    prediction_distill_loss,
    student_layer_alive,
)
from cofi_lightning.core.lagrangian import LagrangeMultipliers, TargetPath
from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.data.tasks import get_task
from cofi_lightning.training.optim import (
    WEIGHT_GROUPS,
    build_optimizer,
    build_scheduler,
    group_params,
)
from cofi_lightning.training.validation_metrics import ValidationCollector

__all__ = ["CoFiSystem"]

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_LABEL_KEYS = ("labels", "start_positions", "end_positions")


def _logits(out: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Classification ``[B, C]`` logits, or ``(start [B, S], end [B, S])`` for QA."""
    if getattr(out, "start_logits", None) is not None:
        return out.start_logits, out.end_logits
    return out.logits


class CoFiSystem(L.LightningModule):
    """Student (+ masks + multipliers) trained on the task or distilled from a frozen teacher.

    Args:
        student: A ``CoFiBertForSequenceClassification`` / ``...ForQuestionAnswering``.
        task: Task name (``sst2``, ``squad``, ...); chooses metrics and the main metric.
        stage: The stage's settings (lr, schedule, length); with ``masks`` a
            :class:`~cofi_lightning.config.PruningConfig` (target, warm-ups, ``reg_lr``).
        optim: Optimizer settings shared by the stages (weight decay, clipping, warm-up ratio).
        freeze_embeddings: Keep the embedding tables out of the optimizer.
        masks: The student's :class:`CoFiMasks` (pruning stage only).
        teacher: Frozen fine-tuned model of the same task; None trains on the task loss.
        distill: Distillation settings (used with a teacher).
        layer_distiller: Projection + layer loss; None builds one for the student's hidden size
            when there is a teacher and ``distill.alpha_layer > 0``.
        seed: Seed of the per-step mask noise (the same on every rank).
        constraint: What the Lagrangian constrains (pruning stage); None: the parameters, at
            ``stage.target_sparsity``.
    """

    def __init__(
        self,
        student: nn.Module,
        *,
        task: str,
        stage: StageConfig,
        optim: OptimConfig | None = None,
        freeze_embeddings: bool = False,
        masks: CoFiMasks | None = None,
        teacher: nn.Module | None = None,
        distill: DistillConfig | None = None,
        layer_distiller: LayerDistiller | None = None,
        seed: int = 0,
        constraint: ParamsConstraint | LatencyConstraint | None = None,
    ) -> None:
        super().__init__()
        if masks is not None and not isinstance(stage, PruningConfig):
            raise ValueError("with `masks` (the prune stage), `stage` must be a PruningConfig")
        self.task = get_task(task)
        # HF loaders return models in eval mode and Lightning keeps the mode it finds, so without
        # this the student would train with dropout off.
        self.student = student.train()
        self.masks = masks
        self.multipliers = LagrangeMultipliers() if masks is not None else None
        self.stage = stage
        self.optim = optim or OptimConfig()
        self.freeze_embeddings = freeze_embeddings
        if freeze_embeddings and self.optim.clip_over == "optimized":
            # Nothing applies their gradients and nothing reads them: skip computing them.
            for name, p in self.student.named_parameters():
                if "embeddings." in name:
                    p.requires_grad_(False)
        self.pruning: PruningConfig | None = stage if masks is not None else None
        if self.pruning is not None and constraint is None:
            constraint = ParamsConstraint(self.pruning.target_list)
        self.constraint = constraint
        self.distill = distill or DistillConfig()
        self.seed = int(seed)
        self.set_teacher(teacher)
        #: A :class:`~cofi_lightning.run.teacher_cache.TeacherCache` that replaces the teacher's
        #: forward in training steps (set by the pipeline; None runs the teacher).
        self.teacher_cache = None
        if teacher is not None and layer_distiller is None and self.distill.alpha_layer > 0:
            layer_distiller = LayerDistiller(teacher.config.hidden_size)
        self.layer_distiller = layer_distiller
        self.collector = ValidationCollector(self.task)
        # resolved in configure_optimizers, once the trainer knows the epoch length
        self.pre_pruning_steps = 0
        self.lagrangian_warmup_steps = 0
        self.target_path: TargetPath | None = None  # t(step), set with the stage's length
        self._noise: dict[str, torch.Tensor] | None = None
        self._noise_step = -1
        #: Number of mask noise draws (one per optimizer step while pruning); tests read it.
        self.mask_draws = 0
        #: The masks of the last training step (detached), for callbacks and tests.
        self.current_masks: Masks | None = None
        #: ``{"val/<metric>": value}`` of the last validation, for callbacks.
        self.last_val_metrics: dict[str, float] = {}
        #: Whether validations reach the loggers, and the global step of the last one that did.
        self.log_val = True
        self.last_val_step: int | None = None

    # --- teacher ----------------------------------------------------------------------------------

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def set_teacher(self, teacher: nn.Module | None) -> None:
        """Attach a frozen teacher without registering it as a submodule (see module docstring)."""
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher)

    def _teacher_to_device(self) -> None:
        if self._teacher is not None:
            self._teacher.to(self.device)

    def on_fit_start(self) -> None:
        self._teacher_to_device()

    def on_validation_start(self) -> None:
        self._teacher_to_device()

    # --- optimization -----------------------------------------------------------------------------

    def _weights(self) -> list[tuple[str, nn.Parameter]]:
        named = [(f"student.{n}", p) for n, p in self.student.named_parameters()]
        if self.layer_distiller is not None:
            named += [
                (f"layer_distiller.{n}", p) for n, p in self.layer_distiller.named_parameters()
            ]
        return named

    def stage_steps(self) -> tuple[int, int]:
        """``(optimizer steps per epoch, optimizer steps of the stage)``.

        Counted from the DataModule's ``train_dataset`` and ``batch_size`` (after DDP sharding,
        ``limit_train_batches`` and accumulation) rather than
        ``trainer.estimated_stepping_batches``: that one builds the training loader before a
        resumed checkpoint's loader state is read, so Lightning would drop the position inside
        the epoch.
        """
        trainer = self.trainer
        dm = trainer.datamodule
        if getattr(dm, "train_dataset", None) is None or not getattr(dm, "batch_size", None):
            raise RuntimeError(
                "CoFiSystem needs a DataModule with `train_dataset` and `batch_size` "
                "(fit(system, datamodule=...)) to size its schedules"
            )
        per_epoch = steps_per_epoch(
            len(dm.train_dataset),
            dm.batch_size,
            trainer.world_size,
            trainer.limit_train_batches,
            trainer.accumulate_grad_batches,
        )
        return per_epoch, stage_total(per_epoch, trainer.max_epochs, trainer.max_steps)

    def configure_optimizers(self) -> dict[str, Any]:
        per_epoch, total = self.stage_steps()
        if self.pruning is not None:
            self.pre_pruning_steps, self.lagrangian_warmup_steps = self.pruning.steps(per_epoch)
            self.target_path = self._target_path(per_epoch, total)
        optimizer = build_optimizer(
            self._weights(),
            self.optim,
            lr=self.stage.lr,
            reg_lr=self.pruning.reg_lr if self.pruning is not None else 0.0,
            freeze_embeddings=self.freeze_embeddings,
            log_alphas=self.masks.mask_parameters() if self.masks is not None else (),
            multipliers=self.multipliers,
        )
        scheduler = build_scheduler(
            optimizer, self.optim, self.stage.schedule, total, restart_at=self._restart_step()
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _target_path(self, per_epoch: int, total: int) -> TargetPath:
        """t(step) of this stage: the ramp to the constraint's target, or the sparsity path.

        Raises:
            ConfigError: a path (or warm-up) as long as the stage (naming the keys to change).
        """
        assert self.pruning is not None and self.constraint is not None
        self.pruning.check_fits(per_epoch, total)  # also checked at the door where it can be
        ramps, dwells = self.pruning.path_steps(per_epoch)  # one target: ([warm-up], [])
        targets = tuple(self.constraint.targets)
        return TargetPath(targets, tuple(ramps), tuple(dwells), self.pruning.start_sparsity)

    def _restart_step(self) -> int:
        """The step at which the weights' optimizer restarts (0: never; ``restart_optimizer``)."""
        if self.pruning is None or not self.pruning.restart_optimizer:
            return 0
        return self.pre_pruning_steps

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """With ``pruning.restart_optimizer``: forget the weights' AdamW moments when the masks
        switch on (the original builds a new optimizer there; its schedule restarts too, see
        :func:`~cofi_lightning.training.optim.build_scheduler`). Idempotent until the next step, so
        a run resumed at that step does the same."""
        restart = self._restart_step()
        if restart and self.global_step == restart:
            optimizer = self.optimizers(use_pl_optimizer=False)
            for p in group_params(optimizer, WEIGHT_GROUPS):
                optimizer.state.pop(p, None)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        """Clip the weights' gradient norm (never log-alphas or multipliers, as CoFi).

        ``optim.clip_over=optimized`` clips the weight groups of the optimizer; ``model`` every
        student and projection gradient, frozen embeddings included, as the original's
        ``clip_grad_norm_(model.parameters())`` (their norm then shrinks the applied updates)."""
        max_norm = self.optim.max_grad_norm
        if max_norm is None or max_norm <= 0:
            return
        if self.optim.clip_over == "model":
            params = [p for _, p in self._weights() if p.grad is not None]
        else:
            params = group_params(optimizer, WEIGHT_GROUPS)
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.masks is not None:
            self.masks.clamp_()  # CoFi's log-alpha range after every step

    # --- masks and sparsity -----------------------------------------------------------------------

    def pruning_active(self) -> bool:
        """Masks and the Lagrangian are on (pruning stage, after the distillation-only warm-up)."""
        return self.masks is not None and self.global_step >= self.pre_pruning_steps

    def target_now(self) -> float:
        """The current target sparsity t (0 / ``start_sparsity`` during the warm-up)."""
        path = self.target_path or self._target_path(1, None)  # stepped outside a Trainer
        return path(self.global_step - self.pre_pruning_steps)

    def _train_masks(self) -> Masks:
        """Masks of this optimizer step: fresh noise once per step, a fresh graph per micro-batch.

        Re-sampling from cached noise (instead of caching the masks) gives identical values in every
        micro-batch of an accumulated step while each backward owns its autograd graph.
        """
        assert self.masks is not None
        if self._noise_step != self.global_step:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step)
            self._noise = self.masks.noise(generator)
            self._noise_step = self.global_step
            self.mask_draws += 1
        return self.masks.sample(self._noise)

    # --- steps ------------------------------------------------------------------------------------

    def _run(self, model: nn.Module, batch: dict, masks: Masks | None, hidden: bool, labels: bool):
        inputs = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
        if labels:
            inputs.update({k: batch[k] for k in _LABEL_KEYS if k in batch})
        return model(**inputs, masks=masks, output_hidden_states=hidden)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pruning = self.pruning_active()
        masks = self._train_masks() if pruning else None
        self.current_masks = None if masks is None else masks.detach()
        teacher = self._teacher
        use_layer = teacher is not None and self.layer_distiller is not None
        out = self._run(self.student, batch, masks, hidden=use_layer, labels=teacher is None)
        if teacher is None:
            loss = main = out.loss
            self.log("train/task_loss", main)
        else:
            t_logits, t_hidden, t_depth = self._teacher_outputs(batch, use_layer)
            pred = prediction_distill_loss(_logits(out), t_logits, self.distill.temperature)
            layer = None
            if use_layer:
                alive = None
                if masks is not None:
                    alive = student_layer_alive(len(out.hidden_states) - 1, masks)
                layer, chosen = self.layer_distiller(
                    out.hidden_states[1:],
                    t_hidden,
                    batch.get("attention_mask"),
                    alive,
                    mapping=self.distill.layer_mapping,
                    tokens=self.distill.layer_loss_tokens,
                    num_teacher_layers=t_depth,
                )
                self.log("train/layer_loss", layer)
                # The student layer matched to each distilled teacher layer (0-based), logged as
                # a tensor (no host sync): how the dynamic mapping moves as layers are pruned.
                t_layers = self.layer_distiller.distilled_layers(t_depth)
                for t_layer, s_layer in zip(t_layers, chosen, strict=True):
                    self.log(f"distill/student_layer_for_teacher_{t_layer}", s_layer.float())
            loss = main = distillation_loss(
                pred,
                layer,
                alpha_pred=self.distill.alpha_pred,
                alpha_layer=self.distill.alpha_layer,
            )
            self.log("train/pred_loss", pred)
            self.log("train/distill_loss", main)
        if self.masks is not None:
            loss = loss + self._lagrangian(pruning)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _teacher_outputs(self, batch: dict, hidden: bool):
        """``(logits, distilled states [n_t, B, S, H] or None, teacher depth)`` of this batch:
        read from the teacher cache when one is attached, else from a teacher forward."""
        teacher = self._teacher
        depth = teacher.config.num_hidden_layers
        cache = self.teacher_cache
        if cache is not None and "example_index" in batch:
            ids = batch["input_ids"]
            cached = cache.batch(batch["example_index"], ids.shape[1], ids.device)
            return cached.logits, cached.hidden if hidden else None, depth
        with torch.no_grad():
            t_out = self._run(teacher, batch, None, hidden=hidden, labels=False)
        if not hidden:
            return _logits(t_out), None, depth
        assert self.layer_distiller is not None
        layers = self.layer_distiller.distilled_layers(depth)
        states = torch.stack([t_out.hidden_states[i + 1] for i in layers])
        return _logits(t_out), states, depth

    def _lagrangian(self, pruning: bool) -> torch.Tensor:
        """L_c (0 during the warm-up) and the sparsity logs of this step."""
        assert self.masks is not None and self.multipliers is not None
        constraint = self.constraint
        if pruning:
            s_hat = constraint.expected(self.masks)
            target = self.target_now()
            if self.pruning.multiplier_reset:
                optimizer = self.optimizers(use_pl_optimizer=False) if self._trainer else None
                reset = self.multipliers.reset_windup_(float(s_hat.detach()) - target, optimizer)
                self.log("sparsity/lambda_1_reset", float(reset))
            lag = self.multipliers(s_hat, target)
        else:
            with torch.no_grad():
                s_hat = constraint.expected(self.masks)
            target, lag = 0.0, s_hat.new_zeros(())
        self.log("train/lagrangian_loss", lag.float())
        self.log(f"{constraint.prefix}/expected", s_hat.float(), prog_bar=True)
        self.log(f"{constraint.prefix}/target", float(target))
        if constraint.prefix != "sparsity":  # the parameter sparsity is always reported
            with torch.no_grad():
                self.log("sparsity/expected", self.masks.expected_sparsity().float())
        self.log("sparsity/lambda_1", self.multipliers.lambda_1.detach())
        self.log("sparsity/lambda_2", self.multipliers.lambda_2.detach())
        return lag.to(torch.float32)

    def eval_masks(self) -> Masks | None:
        """Deterministic masks once pruning has started; None before (and without masks)."""
        if self.masks is None or not self.pruning_active():
            return None
        return self.masks.deterministic()

    def on_validation_epoch_start(self) -> None:
        self._val_masks = self.eval_masks()
        self.collector.reset()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        out = self._run(self.student, batch, self._val_masks, hidden=False, labels=False)
        self.collector.add(dataloader_idx, _logits(out), batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self.collector.compute(self.trainer)
        if self.masks is not None:
            constraint = self.constraint
            with torch.no_grad():
                metrics["sparsity/expected_at_eval"] = float(self.masks.expected_sparsity())
                if constraint.prefix != "sparsity":
                    expected = float(constraint.expected(self.masks))
                    metrics[f"{constraint.prefix}/expected_at_eval"] = expected
            if self._val_masks is not None:
                metrics["sparsity/deterministic"] = self.masks.sparsity(self._val_masks)
                if constraint.prefix != "sparsity":
                    real = constraint.real(self.masks, self._val_masks)
                    metrics[f"{constraint.prefix}/deterministic"] = real
                    metrics.update(constraint.describe(self.masks, self._val_masks))
                for unit, z in self._val_masks.items():
                    metrics[f"structure/{unit}_kept"] = float((z != 0).float().mean())
        self.last_val_metrics = metrics
        if not self.trainer.sanity_checking and self.log_val:
            self.log_dict(metrics, sync_dist=False)
            self.last_val_step = self.global_step

    def main_metric_key(self) -> str:
        """``val/<main metric>`` (``val/mnli_m/accuracy`` for MNLI)."""
        return f"val/{self.task.main_metric_key}"
