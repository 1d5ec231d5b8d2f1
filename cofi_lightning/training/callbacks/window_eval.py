"""Evaluate as soon as the structure to export enters the target window.

This file owns :class:`EvaluateOnWindowEntry`. After every pruning step it counts the parameters the
deterministic masks keep (the exported model's real sparsity; a few small tensor ops, no forward)
and, when that sparsity first enters ``target ± epsilon`` (once per target), asks Lightning for a
validation at the end of this very step. Only the first entry: a sparsity that hovers at the
window's edge would otherwise re-enter it every few steps and trigger dozens of evaluations (39 in
a 3,000-step SST-2 run at 60%). A short schedule then never misses the window between two
regular evaluations, and :class:`~cofi_lightning.training.callbacks.BestMasksCheckpoint` gets a
qualifying candidate. Regular evaluations keep their cadence.

It changes when validation runs, never what training computes: the decision depends only on the
masks, which are identical on every DDP rank and restored bit-exactly on resume (its state is
checkpointed).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class EvaluateOnWindowEntry(L.Callback):
    """Trigger a validation when the deterministic masks' sparsity enters a target window.

    The sparsity is the system's constraint value (parameter sparsity, or latency reduction).

    Args:
        target_sparsity: The final target t (of the constraint), or the targets of a sparsity
            path (one window each; they do not overlap, see ``PruningConfig``).
        epsilon: Half-width of a window (``pruning.sparsity_epsilon``).
        select_on: The sparsity the window reads, as in ``BestMasksCheckpoint``:
            ``deterministic`` (the export's) or ``expected`` (the gates' ŝ).
    """

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
        """The window's sparsity now: of the encoder the deterministic masks would export, or ŝ."""
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
