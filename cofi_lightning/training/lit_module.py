"""The CoFi training system: a LightningModule composing the student with its stage's parts
(``parts.py``), for one training / validation step of every stage (Xia et al. 2022, Sec. 3)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from cofi_lightning.config import OptimConfig, StageConfig
from cofi_lightning.config.stage_configs import stage_total, steps_per_epoch
from cofi_lightning.core.masks import Masks
from cofi_lightning.data.tasks import get_task
from cofi_lightning.training.optim import (
    WEIGHT_GROUPS,
    build_optimizer,
    build_scheduler,
    group_params,
)
from cofi_lightning.training.parts import (
    Distillation,
    NoPruning,
    Pruning,
    TaskLoss,
    logits,
    run_model,
)
from cofi_lightning.training.validation_metrics import ValidationCollector

__all__ = ["CoFiSystem"]


class CoFiSystem(L.LightningModule):
    """Student trained by its stage's objective (default :class:`TaskLoss`), with its stage's
    pruning (default :class:`NoPruning`); ``task`` chooses the metrics."""

    def __init__(
        self,
        student: nn.Module,
        *,
        task: str,
        stage: StageConfig,
        optim: OptimConfig | None = None,
        freeze_embeddings: bool = False,
        objective: TaskLoss | Distillation | None = None,
        pruning: Pruning | NoPruning | None = None,
    ) -> None:
        super().__init__()
        self.task = get_task(task)
        # HF loaders return models in eval mode and Lightning keeps the mode it finds, so without
        # this the student would train with dropout off.
        self.student = student.train()
        self.objective = objective or TaskLoss()
        self.pruning = pruning or NoPruning()
        # Registered under the system's own names (checkpoint keys ``masks.*``,
        # ``multipliers.*``, ``layer_distiller.*``); None where the stage has no such part.
        self.masks = self.pruning.masks
        self.multipliers = self.pruning.multipliers
        self.layer_distiller = self.objective.layer_distiller
        self.constraint = self.pruning.constraint
        self.stage = stage
        self.optim = optim or OptimConfig()
        self.freeze_embeddings = freeze_embeddings
        if freeze_embeddings and self.optim.clip_over == "optimized":
            # Nothing applies their gradients and nothing reads them: skip computing them.
            for name, p in self.student.named_parameters():
                if "embeddings." in name:
                    p.requires_grad_(False)
        self.collector = ValidationCollector(self.task)
        self.current_masks: Masks | None = None
        self.last_val_metrics: dict[str, float] = {}
        #: Whether validations reach the loggers, and the global step of the last one that did.
        self.log_val = True
        self.last_val_step: int | None = None

    def on_fit_start(self) -> None:
        self.objective.to(self.device)

    def on_validation_start(self) -> None:
        self.objective.to(self.device)

    # --- optimization -----------------------------------------------------------------------------

    def _weights(self) -> list[tuple[str, nn.Parameter]]:
        """The student's and the layer projection's parameters."""
        return [
            (name, p)
            for name, p in self.named_parameters()
            if name.split(".")[0] in ("student", "layer_distiller")
        ]

    def stage_steps(self) -> tuple[int, int]:
        """``(optimizer steps per epoch, optimizer steps of the stage)``, from the DataModule:
        ``trainer.estimated_stepping_batches`` builds the loader before a resumed checkpoint's
        loader state is read, so Lightning would drop the position inside the epoch."""
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
        self.pruning.schedule(per_epoch, total)
        optimizer = build_optimizer(
            self._weights(),
            self.optim,
            lr=self.stage.lr,
            freeze_embeddings=self.freeze_embeddings,
            **self.pruning.optimizer_parts(),
        )
        restart = self.pruning.restart_step()
        scheduler = build_scheduler(
            optimizer, self.optim, self.stage.schedule, total, restart_at=restart
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """With ``pruning.restart_optimizer``: forget the weights' AdamW moments when the masks
        switch on, as the original (idempotent within the step, so a resumed run does the same)."""
        restart = self.pruning.restart_step()
        if restart and self.global_step == restart:
            optimizer = self.optimizers(use_pl_optimizer=False)
            for p in group_params(optimizer, WEIGHT_GROUPS):
                optimizer.state.pop(p, None)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        """Clip the weights' gradient norm (never log-alphas or multipliers, as CoFi): the
        optimizer's weight groups, or with ``optim.clip_over=model`` every student and projection
        gradient, frozen embeddings included, as the original."""
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
        self.pruning.clamp_()

    # --- masks ------------------------------------------------------------------------------------

    def pruning_active(self) -> bool:
        return self.pruning.active(self.global_step)

    def eval_masks(self) -> Masks | None:
        """Deterministic masks once pruning has started; None before (and without masks)."""
        return self.masks.deterministic() if self.pruning_active() else None

    # --- steps ------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        masks = self.pruning.train_masks(self.global_step)
        self.current_masks = None if masks is None else masks.detach()
        objective = self.objective
        out = run_model(self.student, batch, masks, objective.hidden_states, objective.labels)
        loss = objective.loss(out, batch, masks, self.log)
        optimizer = self.optimizers(use_pl_optimizer=False) if self._trainer else None
        loss = self.pruning.penalty(loss, self.global_step, optimizer, self.log)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_masks = self.eval_masks()
        self.collector.reset()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        out = run_model(self.student, batch, self._val_masks, hidden=False, labels=False)
        self.collector.add(dataloader_idx, logits(out), batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self.collector.compute(self.trainer)
        metrics.update(self.pruning.eval_metrics(self._val_masks))
        self.last_val_metrics = metrics
        if not self.trainer.sanity_checking and self.log_val:
            self.log_dict(metrics, sync_dist=False)
            self.last_val_step = self.global_step

    def recorded_metrics(self) -> dict[str, float]:
        """The last validation's metrics as a stage records them (``val/`` dropped)."""
        return {k.removeprefix("val/"): v for k, v in self.last_val_metrics.items()}

    def main_metric_key(self) -> str:
        """``val/<main metric>`` (``val/mnli_m/accuracy`` for MNLI)."""
        return f"val/{self.task.main_metric_key}"
