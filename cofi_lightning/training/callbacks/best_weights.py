"""Keep the student weights of the best validation in the teacher and finetune stages, as CoFi's
trainer (and HF's ``load_best_model_at_end``) did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from cofi_lightning.run.checkpoints import save_atomically


class BestWeights(L.Callback):
    """Save the student's weights to ``path`` at each new best main metric; restore them after
    training."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.best: float | None = None
        self.best_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = module.last_val_metrics.get(module.main_metric_key())
        if score is None or (self.best is not None and score <= self.best):
            return
        self.best, self.best_step = float(score), trainer.global_step
        if trainer.is_global_zero:
            save_atomically(module.student.state_dict(), self.path)  # never half-written

    def restore(self, module: L.LightningModule) -> bool:
        """Load the best weights into ``module.student``; False when no validation was seen."""
        if self.best is None or not self.path.is_file():
            return False
        state = torch.load(self.path, map_location=module.device, weights_only=True)
        module.student.load_state_dict(state)
        return True
