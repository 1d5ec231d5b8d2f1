"""Keep the pruning stage's best sub-network: among evaluations whose sparsity lies within
``epsilon`` of the target, the one with the best main metric is written to ``dirpath`` as

* ``masks.pt``: ``{unit: tensor}`` of the deterministic (soft-valued) masks;
* ``student.pt``: the student's full-size ``state_dict`` (masks not yet folded in);
* ``layer_distiller.pt``: the projection's ``state_dict`` (absent without layer distillation);
* ``scores.pt``: the gates' soft scores (``CoFiMasks.scores``), for ``export.round_to``;
* ``meta.json``: step, metric, expected and deterministic sparsity, ``reached_target``.

The sparsity is by default the real one of the deterministic masks (what is exported), in a
two-sided window; docs/method.md says how this differs from CoFi. Until some evaluation qualifies,
the one closest to the target is kept (``reached_target: false``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from cofi_lightning.core.masks import Masks
from cofi_lightning.run.checkpoints import save_atomically, write_text_atomically


def save_structure(
    dirpath: str | Path,
    masks: Masks,
    student: torch.nn.Module,
    meta: dict[str, Any],
    scores: Masks | None = None,
    layer_distiller: torch.nn.Module | None = None,
) -> None:
    """Write a structure directory (the files listed in the module docstring), each file
    atomically, ``meta.json`` last."""
    dirpath = Path(dirpath)
    save_atomically(dict(masks.detach().to("cpu").items()), dirpath / "masks.pt")
    if scores is not None:
        save_atomically(dict(scores.detach().to("cpu").items()), dirpath / "scores.pt")
    save_atomically(student.state_dict(), dirpath / "student.pt")
    if layer_distiller is not None:
        save_atomically(layer_distiller.state_dict(), dirpath / "layer_distiller.pt")
    write_text_atomically(dirpath / "meta.json", json.dumps(meta, indent=2))


def load_masks(dirpath: str | Path) -> Masks:
    """The :class:`Masks` saved by :class:`BestMasksCheckpoint` in ``dirpath``."""
    return Masks(**torch.load(Path(dirpath) / "masks.pt", weights_only=True))


class BestMasksCheckpoint(L.Callback):
    """Save the best masks and weights among evaluations with ``|s − t| <= epsilon``.

    Args:
        select_on: ``deterministic`` (s = real sparsity of the deterministic masks, what is
            exported) or ``expected`` (s = ŝ, the gates' expected sparsity, as CoFi).
        prefix: The constraint's metric prefix (``sparsity`` or ``latency_reduction``).
        name: Tells instances apart (one per target of a sparsity path) in checkpoints; None
            keeps the plain state key.
    """

    SPARSITY_KEYS = {"deterministic": "deterministic", "expected": "expected_at_eval"}

    def __init__(
        self,
        dirpath: str | Path,
        target_sparsity: float,
        epsilon: float = 0.01,
        select_on: str = "deterministic",
        prefix: str = "sparsity",
        name: str | None = None,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.target = float(target_sparsity)
        self.epsilon = float(epsilon)
        self.sparsity_key = f"{prefix}/{self.SPARSITY_KEYS[select_on]}"
        self.quantity = prefix.replace("_", " ")  # "sparsity", "latency reduction"
        self.best: float | None = None
        self.best_step: int | None = None
        self.closest: float | None = None  # smallest |ŝ − t| saved while nothing qualified
        self.name = name

    @property
    def state_key(self) -> str:
        return super().state_key if self.name is None else self._generate_state_key(name=self.name)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "closest": self.closest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.closest = state.get("closest")

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or module.masks is None or not module.pruning_active():
            return
        metrics = module.last_val_metrics
        sparsity = metrics.get(self.sparsity_key)
        score = metrics.get(module.main_metric_key())
        if score is None or sparsity is None:
            return
        gap = abs(sparsity - self.target)
        if gap <= self.epsilon:
            if self.best is None or score > self.best:
                self.best, self.best_step = score, trainer.global_step
                self._save(trainer, module, reached=True)
        elif self.best is None and (self.closest is None or gap < self.closest):
            self.closest = gap
            self._save(trainer, module, reached=False)

    def finalize(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """After the last validation: warn if no evaluation qualified (saving the final state if
        nothing was saved)."""
        if self.best is not None or module.masks is None:
            return
        rank_zero_warn(
            f"no evaluation reached the target {self.quantity} {self.target:.4g} ± {self.epsilon}; "
            "keeping "
            "the evaluation closest to it (see prune/best/meta.json). Train longer, evaluate more "
            "often, or lengthen the Lagrangian warm-up."
        )
        if self.closest is None:
            self._save(trainer, module, reached=False)

    def _save(self, trainer: L.Trainer, module: L.LightningModule, reached: bool) -> None:
        if not trainer.is_global_zero:
            return
        masks = module.masks.deterministic().detach().to("cpu")
        with torch.no_grad():
            expected = float(module.masks.expected_sparsity())
        constraint = module.constraint
        meta = {
            "constraint": constraint.name,
            "constraint_value": constraint.real(module.masks, masks),
            "step": trainer.global_step,
            "metric": module.last_val_metrics.get(module.main_metric_key()),
            "main_metric": module.main_metric_key(),
            "expected_sparsity": expected,
            "deterministic_sparsity": module.masks.sparsity(masks),
            "target": self.target,
            "reached_target": reached,
        }
        save_structure(
            self.dirpath,
            masks,
            module.student,
            meta,
            scores=module.masks.scores(),  # for export.round_to
            layer_distiller=module.layer_distiller,
        )
