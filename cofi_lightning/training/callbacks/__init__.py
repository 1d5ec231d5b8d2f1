"""Callbacks of the CoFi pipeline: best-mask selection during pruning, best weights while
fine-tuning, and structure dashboards."""

from cofi_lightning.training.callbacks.best_masks import BestMasksCheckpoint, load_masks
from cofi_lightning.training.callbacks.best_weights import BestWeights
from cofi_lightning.training.callbacks.structure import StructureLogger, heatmap
from cofi_lightning.training.callbacks.window_eval import EvaluateOnWindowEntry

__all__ = [
    "EvaluateOnWindowEntry",
    "BestMasksCheckpoint",
    "BestWeights",
    "StructureLogger",
    "heatmap",
    "load_masks",
]
