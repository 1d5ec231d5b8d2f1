"""Evaluate as soon as the structure to export enters the target window, so a short schedule never
misses it between two regular evaluations. Only the first entry per target: a sparsity hovering
at the window's edge would otherwise trigger dozens of evaluations. It changes when validation
runs, never what training computes.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class EvaluateOnWindowEntry(L.Callback):
    """Trigger a validation when the constraint's value first enters ``target ± epsilon`` (one
    window per target of a sparsity path); ``select_on`` as in ``BestMasksCheckpoint``."""

    def __init__(
        self,
        target_sparsity: float | list[float],
        epsilon: float,
        select_on: str = "deterministic",
    ) -> None:
        targets = target_sparsity if isinstance(target_sparsity, list) else [target_sparsity]
        self.targets = [float(t) for t in targets]
        self.epsilon = float(epsilon)
        self.select_on = select_on
        self.window: int | None = None  # the window the real sparsity was in after the last step
        self.entered: set[int] = set()  # windows whose first entry was evaluated
        self.triggered_steps: list[int] = []
        self._regular: int | float | None = None  # the trainer's val_check_batch to restore
        self._restore_pending = False

    def state_dict(self) -> dict[str, Any]:
        # Lightning checkpoints a step before validating it: a pending trigger must survive, or a
        # resumed run would skip that evaluation (and could select another structure).
        return {
            "inside": self.window is not None,
            "window": self.window,
            "entered": sorted(self.entered),
            "triggered_steps": list(self.triggered_steps),
            "pending": self._regular is not None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = state.get("window", 0 if state["inside"] else None)
        self.entered = set(state.get("entered", ()))
        self.triggered_steps = list(state["triggered_steps"])
        self._restore_pending = bool(state.get("pending", False))

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._restore_pending:  # resumed between a trigger and its evaluation
            self._regular = trainer.val_check_batch
            trainer.val_check_batch = 1
            self._restore_pending = False

    def sparsity(self, module: L.LightningModule) -> float:
        """The window's sparsity now: of the deterministic masks' export, or ŝ."""
        masks, constraint = module.masks, module.constraint
        with torch.no_grad():
            if self.select_on == "expected":
                return float(constraint.expected(masks))
            return constraint.real(masks, masks.deterministic())

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx) -> None:
        if module.masks is None or not module.pruning_active():
            return
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # mid-step: the masks change only at optimizer steps
        s = self.sparsity(module)
        window = next((k for k, t in enumerate(self.targets) if abs(s - t) <= self.epsilon), None)
        first = window is not None and window not in self.entered
        if first and window != self.window and self._regular is None:
            # Lightning reads val_check_batch right after this hook: 1 = validate now.
            self._regular = trainer.val_check_batch
            trainer.val_check_batch = 1
            self.triggered_steps.append(trainer.global_step)
            self.entered.add(window)
        self.window = window

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._regular is not None:
            trainer.val_check_batch = self._regular
            self._regular = None
